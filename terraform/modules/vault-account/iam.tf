# One role per function. "common" grants what every pipeline function needs; the per-function
# policy grants the rest. The scrub and alert functions have no "common" policy: theirs grants
# only what their code calls (tests/iac/recorded-calls.json). No statement allows "*" actions; the only "*" resource is X-Ray's
# (PutTraceSegments has no resource-level permissions), pinned to this region.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "${var.name_prefix}-${each.key}"
  description        = "tidemark ${each.key} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = merge(var.tags, { "tidemark:role" = each.key })
}

data "aws_iam_policy_document" "common" {
  for_each = toset(local.pipeline_functions)

  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    effect    = "Allow"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid    = "ControlTable"
    effect = "Allow"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
      "dynamodb:BatchGetItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
      "dynamodb:DescribeTable",
    ]
    resources = [aws_dynamodb_table.control.arn, "${aws_dynamodb_table.control.arn}/index/*"]
  }

  statement {
    sid       = "VaultKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.vault.arn]
  }

  statement {
    sid       = "ReadVault"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.vault.arn}/v1/*"]
  }

  statement {
    sid       = "ListVault"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.vault.arn]
  }
}

resource "aws_iam_role_policy" "common" {
  for_each = toset(local.pipeline_functions)
  name     = "common"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.common[each.key].json
}

data "aws_iam_policy_document" "seeder" {
  statement {
    sid       = "AssumeSourceReadRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = [local.source_read_role_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceAccount"
      values   = var.source_account_ids
    }
  }

  statement {
    sid       = "EnqueueTasks"
    effect    = "Allow"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.main["work"].arn]
  }

  statement {
    sid       = "AsyncDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_dlq.arn]
  }

  # The daily reconciliation runs in the seeder: it writes the packs and index segments of what
  # the events missed (tests/iac/test_calls.py, from the calls the seeder makes on moto).
  statement {
    sid       = "WriteVault"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.vault.arn}/v1/*"]
  }
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "AssumeSourceReadRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = [local.source_read_role_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceAccount"
      values   = var.source_account_ids
    }
  }

  statement {
    sid       = "ConsumeAndSplitTasks"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:SendMessage"]
    resources = [aws_sqs_queue.main["work"].arn]
  }

  statement {
    sid       = "WriteVault"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.vault.arn}/v1/*"]
  }
}

data "aws_iam_policy_document" "delta" {
  statement {
    sid       = "AssumeSourceReadRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = [local.source_read_role_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceAccount"
      values   = var.source_account_ids
    }
  }

  statement {
    sid       = "ConsumeDeltas"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.main["delta"].arn]
  }

  statement {
    sid       = "WriteVault"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.vault.arn}/v1/*"]
  }
}

data "aws_iam_policy_document" "checkpoint" {
  # The checkpoint asks each source whether it still exists (a deleted bucket is recorded gone,
  # not an error), through the source account's read role.
  statement {
    sid       = "AssumeSourceReadRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = [local.source_read_role_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceAccount"
      values   = var.source_account_ids
    }
  }

  statement {
    sid       = "WatermarkFromQueueAge"
    effect    = "Allow"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.main["work"].arn, aws_sqs_queue.main["delta"].arn]
  }

  # A source that exists again after it was gone is seeded afresh: its tasks go on the work queue.
  statement {
    sid       = "SeedReturnedSources"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main["work"].arn]
  }

  # While changes keep arriving the delta queue is never empty; SQS publishes the age of its
  # oldest unhandled message only as a CloudWatch metric, which has no resource-level permissions.
  statement {
    sid       = "WatermarkFromQueueAgeMetric"
    effect    = "Allow"
    actions   = ["cloudwatch:GetMetricStatistics"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid       = "SealRecoveryPoints"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.vault.arn}/v1/*"]
  }

  statement {
    sid       = "AsyncDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_dlq.arn]
  }
}

data "aws_iam_policy_document" "restore" {
  statement {
    sid       = "PlanAndRunRestoreTasks"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:SendMessage"]
    resources = [aws_sqs_queue.main["restore"].arn]
  }

  statement {
    sid       = "WriteRestoreTargets"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${local.restore_target_buckets}/*"]
  }

  statement {
    sid       = "ListRestoreTargets"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.restore_target_buckets]
  }

  # A restore started from the console test event creates a missing copy-mode target.
  statement {
    sid       = "CreateRestoreTargets"
    effect    = "Allow"
    actions   = ["s3:CreateBucket"]
    resources = [local.restore_target_buckets]
  }

  # The only deletes in this account: a finished copy-mode run removes its marker from its target.
  statement {
    sid       = "RemoveRestoreMarkers"
    effect    = "Allow"
    actions   = ["s3:DeleteObject"]
    resources = [local.restore_target_markers]
  }

  statement {
    sid       = "AsyncDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_dlq.arn]
  }
}

# The api function starts runs and reads them: run::start checks the source's recovery points
# (the common vault read), checks a copy-mode target (HeadBucket, a one-key listing), creates a
# missing one and writes the run's marker into it, and sends the first plan step.
data "aws_iam_policy_document" "api" {
  statement {
    sid       = "SendRestoreSteps"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.main["restore"].arn]
  }

  statement {
    sid       = "CheckRestoreTargets"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.restore_target_buckets]
  }

  statement {
    sid       = "CreateRestoreTargets"
    effect    = "Allow"
    actions   = ["s3:CreateBucket"]
    resources = [local.restore_target_buckets]
  }

  statement {
    sid       = "MarkRestoreTargets"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = [local.restore_target_markers]
  }
}

# The scrub verifies the vault (lists it, reads packs, segments, points and large copies by
# version) and keeps its cursor in the control table (GetItem, conditional PutItem).
data "aws_iam_policy_document" "scrub" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["scrub"].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    effect    = "Allow"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid       = "ScrubCursor"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.control.arn]
  }

  # The vault's objects and the control table are encrypted with the vault key.
  statement {
    sid       = "VaultKeyDecrypt"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.vault.arn]
  }

  statement {
    sid       = "ReadVault"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.vault.arn}/v1/*"]
  }

  statement {
    sid       = "ListVault"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.vault.arn]
  }

  statement {
    sid       = "AsyncDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_dlq.arn]
  }
}

# The alert function sweeps the dead-letter queues (it receives and makes visible again, never
# deletes: a dead letter stays to be redriven), reads the run history and failures in the control
# table, remembers which messages it alerted, and publishes to the alarm topic (encrypted with the
# vault key, as the queues are).
data "aws_iam_policy_document" "alert" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["alert"].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    effect    = "Allow"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [local.region]
    }
  }

  statement {
    sid       = "ReadDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"]
    resources = [for q in local.alerted_dead_letter_queues : aws_sqs_queue.dlq[q].arn]
  }

  statement {
    sid       = "ReadRunHistory"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"]
    resources = [aws_dynamodb_table.control.arn]
  }

  statement {
    sid       = "PublishAlerts"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
  }

  statement {
    sid       = "VaultKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.vault.arn]
  }
}

locals {
  specific_policies = {
    seeder     = data.aws_iam_policy_document.seeder.json
    worker     = data.aws_iam_policy_document.worker.json
    delta      = data.aws_iam_policy_document.delta.json
    checkpoint = data.aws_iam_policy_document.checkpoint.json
    restore    = data.aws_iam_policy_document.restore.json
    api        = data.aws_iam_policy_document.api.json
    scrub      = data.aws_iam_policy_document.scrub.json
    alert      = data.aws_iam_policy_document.alert.json
  }
}

resource "aws_iam_role_policy" "specific" {
  for_each = local.functions
  name     = each.key
  role     = aws_iam_role.function[each.key].id
  policy   = local.specific_policies[each.key]
}

# The restore target roles of the source accounts (write access to the protected buckets) are
# assumable only with enable_restore_target_role, by the functions that write targets: restore
# (its tasks) and api (run::start checks the target, creates it and writes the run's marker).
data "aws_iam_policy_document" "restore_target_roles" {
  statement {
    sid       = "AssumeRestoreTargetRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole"]
    resources = [local.restore_target_role_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceAccount"
      values   = var.source_account_ids
    }
  }
}

resource "aws_iam_role_policy" "restore_target_roles" {
  for_each = var.enable_restore_target_role ? toset(["restore", "api"]) : toset([])
  name     = "assume-restore-target-roles"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.restore_target_roles.json
}
