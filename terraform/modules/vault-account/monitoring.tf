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
    scrub_function      = aws_lambda_function.this["scrub"].function_name
    alert_function      = aws_lambda_function.this["alert"].function_name
    restore_api         = aws_api_gateway_rest_api.restore.name
  })
}

locals {
  # Every description begins with the step and its runbook section (tests/iac/test_alarms.py).
  dead_letter_alarms = {
    work    = "Step: seed task. Runbook: docs/runbook.md#seed-steps-and-tasks. Work tasks or seed steps failed max_receive_count times; the alert function publishes one alert per message (search the worker logs by its task_id)."
    delta   = "Step: delta batch. Runbook: docs/runbook.md#delta-batches. S3 change events failed max_receive_count times; the alert function publishes one alert per event. The RPO cannot advance past them."
    restore = "Step: restore task. Runbook: docs/runbook.md#restore-steps-and-tasks. Restore steps or tasks failed max_receive_count times; the alert function publishes one alert per message."
    async   = "Step: scheduled invocation. Runbook: docs/runbook.md#schedules-and-undelivered-events. A schedule (checkpoint, reconciliation, scrub) or an asynchronous restore invocation failed, or EventBridge could not deliver S3 events to the delta queue."
  }

  dead_letter_queue_names = {
    work    = aws_sqs_queue.dlq["work"].name
    delta   = aws_sqs_queue.dlq["delta"].name
    restore = aws_sqs_queue.dlq["restore"].name
    async   = aws_sqs_queue.async_dlq.name
  }

  error_alarms = {
    seeder     = "Step: seed plan. Runbook: docs/runbook.md#seed-steps-and-tasks. The seeder function failed (a seed start or the daily reconciliation; search its log group by run_id)."
    worker     = "Step: seed task. Runbook: docs/runbook.md#seed-steps-and-tasks. The worker function failed whole invocations (search its log group by task_id)."
    delta      = "Step: delta batch. Runbook: docs/runbook.md#delta-batches. The delta function failed whole invocations."
    checkpoint = "Step: checkpoint. Runbook: docs/runbook.md#checkpoints. The checkpoint function failed to seal recovery points."
    restore    = "Step: restore task. Runbook: docs/runbook.md#restore-steps-and-tasks. The restore function failed (a plan or a restore task; search its log group by restore_id)."
    api        = "Step: api request. Runbook: docs/runbook.md#restore-api. The api function failed whole invocations (API Gateway answered 502/504; search its log group and the API's access log)."
    scrub      = "Step: scrub. Runbook: docs/runbook.md#vault-verification. The scrub function failed a step; the next scheduled run continues from the stored cursor."
    alert      = "Step: alert. Runbook: docs/runbook.md#alerts-that-cannot-be-published. The alert function failed; dead-lettered messages stay on their queue and are tried again, unalerted until it succeeds."
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
  alarm_description   = "Step: checkpoint. Runbook: docs/runbook.md#rpo-above-target. The worst bucket's RPO (RpoSeconds in metrics_namespace, per Bucket) is above rpo_alarm_threshold_seconds. Missing data counts as breaching - a silent checkpoint is an RPO problem too - so it stays in ALARM until the first recovery point is sealed."
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
  alarm_description   = "Step: seed task / delta batch. Runbook: docs/runbook.md#s3-503-slowdown. tidemark saw more than slowdown_alarm_threshold S3 503 SlowDown responses in 5 minutes (the adaptive scheduler backs off; check the per-prefix pressure)."
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
  alarm_description   = "Step: restore task. Runbook: docs/runbook.md#objects-a-restore-could-not-write. A restore could not write some objects (RestoreFailed in metrics_namespace, per SourceBucket). `tidemark restore status ID` or GET /v1/restores/{id} lists each failed key with its reason."
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
  alarm_description   = "Step: delta batch. Runbook: docs/runbook.md#delta-batches. The delta function could not capture some changes (ChangesFailed, per Bucket). SQS retries them and then dead-letters them; the delta function's log names each message and reason."
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

resource "aws_cloudwatch_metric_alarm" "verify_damaged" {
  alarm_name          = "${var.name_prefix}-verify-damaged"
  alarm_description   = "Step: scrub. Runbook: docs/runbook.md#vault-verification. The scheduled scrub found vault objects damaged or missing (VerifyDamaged in metrics_namespace, per Vault); its log lines name each object with the source keys and recovery points it affects."
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "damaged"
    label       = "vault objects damaged or missing"
    expression  = "SELECT SUM(VerifyDamaged) FROM ${var.metrics_namespace}"
    period      = 300
    return_data = true
  }
}
