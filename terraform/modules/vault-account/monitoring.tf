resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  display_name      = "tidemark alarms"
  kms_master_key_id = aws_kms_key.vault.arn
  tags              = var.tags
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarm_topic.json
}

data "aws_iam_policy_document" "alarm_topic" {
  statement {
    sid    = "CloudWatchAlarmsPublish"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email != "" ? 1 : 0
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name_prefix
  dashboard_body = templatefile(local.dashboard_template, {
    name_prefix         = var.name_prefix
    metrics_namespace   = var.metrics_namespace
    region              = local.region
    vault_bucket        = aws_s3_bucket.vault.id
    control_table       = aws_dynamodb_table.control.name
    work_queue          = aws_sqs_queue.main["work"].name
    delta_queue         = aws_sqs_queue.main["delta"].name
    restore_queue       = aws_sqs_queue.main["restore"].name
    work_dlq            = aws_sqs_queue.dlq["work"].name
    delta_dlq           = aws_sqs_queue.dlq["delta"].name
    restore_dlq         = aws_sqs_queue.dlq["restore"].name
    async_dlq           = aws_sqs_queue.async_dlq.name
    seeder_function     = aws_lambda_function.this["seeder"].function_name
    worker_function     = aws_lambda_function.this["worker"].function_name
    delta_function      = aws_lambda_function.this["delta"].function_name
    checkpoint_function = aws_lambda_function.this["checkpoint"].function_name
    restore_function    = aws_lambda_function.this["restore"].function_name
    api_function        = aws_lambda_function.this["api"].function_name
    restore_api         = aws_api_gateway_rest_api.restore.name
  })
}

locals {
  dead_letter_alarms = {
    work    = "Work tasks failed max_receive_count times (step = worker; inputs = the task message in the work DLQ; search the worker logs by its task_id)."
    delta   = "S3 change events failed max_receive_count times (step = delta; inputs = the EventBridge events in the delta DLQ). The RPO cannot advance past them."
    restore = "Restore tasks failed max_receive_count times (step = restore; inputs = the task message in the restore DLQ)."
    async   = "A schedule (checkpoint / reconciliation) invocation failed, or EventBridge could not deliver S3 events to the delta queue."
  }

  dead_letter_queue_names = {
    work    = aws_sqs_queue.dlq["work"].name
    delta   = aws_sqs_queue.dlq["delta"].name
    restore = aws_sqs_queue.dlq["restore"].name
    async   = aws_sqs_queue.async_dlq.name
  }

  error_alarms = {
    seeder     = "The seeder function failed (step = seed or reconcile; search its log group by run_id)."
    worker     = "The worker function failed whole invocations (step = copy; search its log group by task_id)."
    delta      = "The delta function failed whole invocations (step = capture)."
    checkpoint = "The checkpoint function failed (step = seal recovery point)."
    restore    = "The restore function failed (step = plan or restore task; search its log group by restore_id)."
    api        = "The api function failed whole invocations (API Gateway answered 502/504; search its log group and the API's access log)."
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = local.dead_letter_alarms
  alarm_name          = "${var.name_prefix}-${each.key}-dlq-not-empty"
  alarm_description   = each.value
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = local.dead_letter_queue_names[each.key] }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "rpo" {
  alarm_name          = "${var.name_prefix}-rpo-above-target"
  alarm_description   = "The worst bucket's RPO (RpoSeconds in metrics_namespace, per Bucket) is above rpo_alarm_threshold_seconds (step = checkpoint). Missing data counts as breaching - a silent checkpoint is an RPO problem too - so it stays in ALARM until the first recovery point is sealed."
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = var.rpo_alarm_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "rpo"
    label       = "worst RPO across buckets"
    expression  = "SELECT MAX(RpoSeconds) FROM ${var.metrics_namespace}"
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "slowdown" {
  alarm_name          = "${var.name_prefix}-s3-503-slowdown"
  alarm_description   = "tidemark saw more than slowdown_alarm_threshold S3 503 SlowDown responses in 5 minutes (the adaptive scheduler backs off; check the per-prefix pressure)."
  evaluation_periods  = 1
  threshold           = var.slowdown_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "slowdown"
    label       = "503 SlowDown, all prefixes"
    expression  = "SELECT SUM(SlowDown503) FROM ${var.metrics_namespace}"
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "restore_failed_objects" {
  alarm_name          = "${var.name_prefix}-restore-failed-objects"
  alarm_description   = "A restore could not write some objects (RestoreFailed in metrics_namespace, per SourceBucket; step = restore task). `tidemark restore status ID` or GET /v1/restores/{id} lists each failed key with its reason."
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "failed"
    label       = "objects a restore could not write"
    expression  = "SELECT SUM(RestoreFailed) FROM ${var.metrics_namespace}"
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "changes_failed" {
  alarm_name          = "${var.name_prefix}-changes-failed"
  alarm_description   = "The delta function could not capture some changes (ChangesFailed, per Bucket; step = delta). SQS retries them and then dead-letters them; the delta function's log names each message and reason."
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "changesfailed"
    label       = "changes not captured"
    expression  = "SELECT SUM(ChangesFailed) FROM ${var.metrics_namespace}"
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = local.error_alarms
  alarm_name          = "${var.name_prefix}-${each.key}-errors"
  alarm_description   = each.value
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.function_error_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}
