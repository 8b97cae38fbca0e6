# Every detail type the delta handler captures (tidemark_core::changes::events::CAPTURED_DETAIL_TYPES;
# tests/iac/test_variables.py checks both sides against it).
locals {
  captured_detail_types = ["Object Created", "Object Deleted", "Object Tags Added", "Object Tags Deleted", "Object ACL Updated", "Object Storage Class Changed", "Object Access Tier Changed", "Object Restore Completed"]
}

# ---------------------------------------------------------------- vault event bus
resource "aws_cloudwatch_event_bus" "vault" {
  name = "${var.name_prefix}-vault"
  tags = var.tags
}

resource "aws_cloudwatch_event_bus_policy" "vault" {
  event_bus_name = aws_cloudwatch_event_bus.vault.name
  policy         = data.aws_iam_policy_document.vault_bus.json
}

data "aws_iam_policy_document" "vault_bus" {
  statement {
    sid    = "tidemark-source-accounts"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = var.source_account_ids
    }
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.vault.arn]
    condition {
      test     = "StringEquals"
      variable = "events:source"
      values   = ["aws.s3"]
    }
    condition {
      test     = "StringEquals"
      variable = "events:detail-type"
      values   = local.captured_detail_types
    }
  }
}

resource "aws_cloudwatch_event_rule" "delta" {
  name           = "${var.name_prefix}-s3-changes-to-delta"
  description    = "S3 object changes tidemark captures (created, deleted, tags, ACL, storage class, archive restores) forwarded by the source accounts, into the delta queue."
  event_bus_name = aws_cloudwatch_event_bus.vault.name
  state          = "ENABLED"
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = local.captured_detail_types
    account       = var.source_account_ids
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "delta" {
  target_id      = "delta-queue"
  rule           = aws_cloudwatch_event_rule.delta.name
  event_bus_name = aws_cloudwatch_event_bus.vault.name
  arn            = aws_sqs_queue.main["delta"].arn

  dead_letter_config {
    arn = aws_sqs_queue.async_dlq.arn
  }

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
}

# ---------------------------------------------------------------- schedules
resource "aws_cloudwatch_event_rule" "checkpoint" {
  name                = "${var.name_prefix}-checkpoint"
  description         = "Seal a recovery point every checkpoint_interval_minutes."
  state               = "ENABLED"
  schedule_expression = local.checkpoint_rate
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "checkpoint" {
  target_id = "checkpoint"
  rule      = aws_cloudwatch_event_rule.checkpoint.name
  arn       = aws_lambda_function.this["checkpoint"].arn
  input     = jsonencode({ buckets = var.protected_bucket_names })

  dead_letter_config {
    arn = aws_sqs_queue.async_dlq.arn
  }

  retry_policy {
    maximum_event_age_in_seconds = 600
    maximum_retry_attempts       = 2
  }
}

resource "aws_cloudwatch_event_rule" "reconcile" {
  name                = "${var.name_prefix}-reconcile"
  description         = "Daily reconciliation of the newest inventory report with the catalog."
  state               = "ENABLED"
  schedule_expression = var.reconciliation_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "reconcile" {
  target_id = "seeder-reconcile"
  rule      = aws_cloudwatch_event_rule.reconcile.name
  arn       = aws_lambda_function.this["seeder"].arn
  input     = jsonencode({ mode = "reconcile", buckets = var.protected_bucket_names, inventory_destination = var.inventory_destination })

  dead_letter_config {
    arn = aws_sqs_queue.async_dlq.arn
  }

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 2
  }
}

# The scrub verifies one time-budgeted step per run and stores where it stopped; the next run
# continues from there (tidemark_lambda::scrub), so the schedule alone carries a pass through.
resource "aws_cloudwatch_event_rule" "scrub" {
  name                = "${var.name_prefix}-scrub"
  description         = "Verify the next stretch of the vault (the scrub continues from its stored cursor)."
  state               = "ENABLED"
  schedule_expression = var.scrub_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "scrub" {
  target_id = "scrub"
  rule      = aws_cloudwatch_event_rule.scrub.name
  arn       = aws_lambda_function.this["scrub"].arn
  input     = jsonencode({})

  dead_letter_config {
    arn = aws_sqs_queue.async_dlq.arn
  }

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 2
  }
}

# The alert function sweeps the dead-letter queues; an SQS event source would delete what it read,
# and a dead letter must stay to be redriven (tidemark_core::alert::sweep).
resource "aws_cloudwatch_event_rule" "alert" {
  name                = "${var.name_prefix}-alert"
  description         = "Sweep the dead-letter queues and publish one alert per new dead-lettered message."
  state               = "ENABLED"
  schedule_expression = "rate(5 minutes)"
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "alert" {
  target_id = "alert"
  rule      = aws_cloudwatch_event_rule.alert.name
  arn       = aws_lambda_function.this["alert"].arn
  input     = jsonencode({})

  retry_policy {
    maximum_event_age_in_seconds = 300
    maximum_retry_attempts       = 0
  }
}

resource "aws_lambda_permission" "alert_schedule" {
  statement_id  = "alert-schedule"
  function_name = aws_lambda_function.this["alert"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.alert.arn
}

resource "aws_lambda_permission" "scrub_schedule" {
  statement_id  = "scrub-schedule"
  function_name = aws_lambda_function.this["scrub"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.scrub.arn
}

resource "aws_lambda_permission" "checkpoint_schedule" {
  statement_id  = "checkpoint-schedule"
  function_name = aws_lambda_function.this["checkpoint"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.checkpoint.arn
}

resource "aws_lambda_permission" "reconcile_schedule" {
  statement_id  = "reconcile-schedule"
  function_name = aws_lambda_function.this["seeder"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reconcile.arn
}
