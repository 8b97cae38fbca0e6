resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.functions
  name              = "/aws/lambda/${var.name_prefix}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.vault.arn
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by the SQS event sources' MaximumConcurrency (seeder, checkpoint and scrub run one at a time from schedules; checkpoint_reserved_concurrency is optional; API Gateway throttles the api function).
  #checkov:skip=CKV_AWS_116:SQS-fed worker and delta are invoked synchronously (their queues have DLQs), the alert function's input is an empty scheduled event (a failed sweep is repeated by the next run, the messages stay on their queues, its error alarm pages), and API Gateway invokes the api function synchronously; seeder, checkpoint, restore and scrub get the async DLQ through the dynamic block below.
  #checkov:skip=CKV_AWS_117:The functions talk only to AWS APIs (S3, SQS, DynamoDB, STS); a VPC would add NAT/endpoint cost without narrowing anything.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the customer owns; the zips are built from this repository by `make package`.
  for_each = local.functions

  function_name = "${var.name_prefix}-${each.key}"
  description   = each.value.description
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.lambda_architecture]
  memory_size   = each.value.memory
  timeout       = each.value.timeout
  role          = aws_iam_role.function[each.key].arn
  kms_key_arn   = aws_kms_key.vault.arn

  reserved_concurrent_executions = each.value.reserved

  filename         = local.use_s3_artifacts ? null : "${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip"
  source_code_hash = local.use_s3_artifacts ? null : filebase64sha256("${var.lambda_package_dir}/${each.value.binary}/bootstrap.zip")
  s3_bucket        = local.use_s3_artifacts ? var.lambda_s3_bucket : null
  s3_key           = local.use_s3_artifacts ? "${var.lambda_s3_prefix}${each.value.binary}/bootstrap.zip" : null

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  dynamic "dead_letter_config" {
    for_each = contains(keys(local.async_functions), each.key) ? [1] : []
    content {
      target_arn = aws_sqs_queue.async_dlq.arn
    }
  }

  environment {
    variables = local.function_environment[each.key]
  }

  tags = merge(var.tags, { "tidemark:function" = each.key })

  depends_on = [aws_iam_role_policy.common, aws_cloudwatch_log_group.function]
}

resource "aws_lambda_event_source_mapping" "sqs" {
  for_each = local.event_sources

  function_name                      = aws_lambda_function.this[each.key].arn
  event_source_arn                   = aws_sqs_queue.main[each.value.queue].arn
  batch_size                         = each.value.batch_size
  maximum_batching_window_in_seconds = each.value.batching_window
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = each.value.max_concurrency
  }

  depends_on = [aws_iam_role_policy.specific]
}
