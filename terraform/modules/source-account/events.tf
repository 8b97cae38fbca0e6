# Every detail type the vault's delta handler captures (tidemark_core::changes::events::CAPTURED_DETAIL_TYPES).
locals {
  captured_detail_types = ["Object Created", "Object Deleted", "Object Tags Added", "Object Tags Deleted", "Object ACL Updated", "Object Storage Class Changed", "Object Access Tier Changed", "Object Restore Completed"]
}

# Forward the protected buckets' Object Created / Object Deleted events from this account's
# default bus to the vault account's bus.

data "aws_iam_policy_document" "events_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "event_forwarding" {
  name_prefix        = "${var.name_prefix}-forward-"
  description        = "EventBridge forwards the protected buckets' Object Created / Object Deleted events to the tidemark vault bus."
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
  tags               = merge(var.tags, { "tidemark:role" = "event-forwarding" })
}

data "aws_iam_policy_document" "event_forwarding" {
  statement {
    sid       = "PutEventsOnVaultBus"
    effect    = "Allow"
    actions   = ["events:PutEvents"]
    resources = [var.vault_event_bus_arn]
  }
}

resource "aws_iam_role_policy" "event_forwarding" {
  name   = "put-events-on-vault-bus"
  role   = aws_iam_role.event_forwarding.id
  policy = data.aws_iam_policy_document.event_forwarding.json
}

resource "aws_cloudwatch_event_rule" "forward" {
  name        = "${var.name_prefix}-forward-s3-changes"
  description = "Object changes tidemark captures (created, deleted, tags, ACL, storage class, archive restores) of the protected buckets, to the tidemark vault bus."
  state       = "ENABLED"
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = local.captured_detail_types
    detail = {
      bucket = {
        name = var.protected_bucket_names
      }
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "forward" {
  target_id = "tidemark-vault-bus"
  rule      = aws_cloudwatch_event_rule.forward.name
  arn       = var.vault_event_bus_arn
  role_arn  = aws_iam_role.event_forwarding.arn
}
