# The alert function sweeps the dead-letter queues (it reads and leaves every message); a message
# it read is visible again when its sweep is done.
resource "aws_sqs_queue" "dlq" {
  for_each                          = local.queues
  name                              = "${var.name_prefix}-${each.key}-dlq"
  visibility_timeout_seconds        = 180
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.vault.arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = var.tags
}

resource "aws_sqs_queue" "main" {
  for_each                          = local.queues
  name                              = "${var.name_prefix}-${each.key}"
  visibility_timeout_seconds        = each.value.visibility_timeout
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.vault.arn
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

# Failed asynchronous invocations (schedules) and events EventBridge could not deliver.
resource "aws_sqs_queue" "async_dlq" {
  name                              = "${var.name_prefix}-async-dlq"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.vault.arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = var.tags
}

resource "aws_sqs_queue_policy" "delta" {
  queue_url = aws_sqs_queue.main["delta"].id
  policy    = data.aws_iam_policy_document.delta_queue.json
}

data "aws_iam_policy_document" "delta_queue" {
  statement {
    sid    = "VaultBusRuleSendsS3Events"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main["delta"].arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.delta.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "async_dlq" {
  queue_url = aws_sqs_queue.async_dlq.id
  policy    = data.aws_iam_policy_document.async_dlq.json
}

data "aws_iam_policy_document" "async_dlq" {
  statement {
    sid    = "EventBridgeDeadLetters"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_dlq.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values = [
        aws_cloudwatch_event_rule.delta.arn,
        aws_cloudwatch_event_rule.checkpoint.arn,
        aws_cloudwatch_event_rule.reconcile.arn,
        aws_cloudwatch_event_rule.scrub.arn,
      ]
    }
  }
}
