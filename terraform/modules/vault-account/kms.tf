resource "aws_kms_key" "vault" {
  description             = "tidemark vault key (vault bucket, pack data keys, queues, table, logs, alarm topic)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.vault_key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "vault" {
  name          = "alias/${var.name_prefix}-vault"
  target_key_id = aws_kms_key.vault.key_id
}

# Key policies must name Resource "*" (the key itself); every statement carries a condition.
data "aws_iam_policy_document" "vault_key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is the key itself (AWS requires it); key administration is granted to this account's root only.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key itself (AWS requires it); every non-administration statement carries a condition.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key itself (AWS requires it); it cannot name another resource.
  statement {
    sid    = "AccountAdministersKey"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:Create*",
      "kms:Describe*",
      "kms:Enable*",
      "kms:List*",
      "kms:Put*",
      "kms:Update*",
      "kms:Revoke*",
      "kms:Disable*",
      "kms:Get*",
      "kms:Delete*",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:ScheduleKeyDeletion",
      "kms:CancelKeyDeletion",
      "kms:RotateKeyOnDemand",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid    = "AccountIamPoliciesMayUseKey"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid    = "CloudWatchLogsEncryptsTidemarkLogGroups"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid    = "EventBridgeSendsToEncryptedQueues"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid    = "CloudWatchAlarmsPublishToEncryptedTopic"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid    = "SourceReadRolesCopyLargeObjectsIntoVault"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = var.source_account_ids
    }
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:PrincipalArn"
      values   = [local.source_read_role_arns]
    }
  }

  dynamic "statement" {
    for_each = var.enable_restore_target_role ? [1] : []
    content {
      sid    = "RestoreTargetRolesReadVaultObjects"
      effect = "Allow"
      principals {
        type        = "AWS"
        identifiers = var.source_account_ids
      }
      actions   = ["kms:Decrypt"]
      resources = ["*"]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
      condition {
        test     = "ArnLike"
        variable = "aws:PrincipalArn"
        values   = [local.restore_target_role_arns]
      }
    }
  }
}
