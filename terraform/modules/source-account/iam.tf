# ---------------------------------------------------------------- read-only backup role
data "aws_iam_policy_document" "read_trust" {
  statement {
    sid     = "VaultFunctionsOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [local.vault_role_principal]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.external_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:PrincipalArn"
      values   = [local.vault_function_roles]
    }
  }
}

resource "aws_iam_role" "read" {
  count                = var.create_account_wide_resources ? 1 : 0
  name                 = var.read_role_name
  description          = "tidemark backup - the vault account reads the protected buckets (objects, versions, tags, ACLs) and nothing else in this account."
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.read_trust.json
  tags                 = merge(var.tags, { "tidemark:role" = "read" })
}

# Per-region permissions attached to the (account-wide) read role.
data "aws_iam_policy_document" "read" {
  statement {
    sid    = "ReadProtectedObjects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:GetObjectTagging",
      "s3:GetObjectVersionTagging",
      "s3:GetObjectAcl",
      "s3:GetObjectVersionAcl",
    ]
    resources = local.protected_object_arns
  }

  statement {
    sid    = "ListProtectedBuckets"
    effect = "Allow"
    actions = [
      "s3:ListBucket",
      "s3:ListBucketVersions",
      "s3:GetBucketLocation",
      "s3:GetBucketVersioning",
      "s3:GetBucketNotification",
      "s3:GetBucketOwnershipControls",
    ]
    resources = local.protected_bucket_arns
  }

  statement {
    sid       = "ReadInventoryReports"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${local.inventory_bucket_arn}/${var.inventory_prefix}/*"]
  }

  statement {
    sid       = "ListInventoryReports"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.inventory_bucket_arn]
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.inventory_prefix}/*"]
    }
  }

  dynamic "statement" {
    for_each = local.has_source_kms_keys ? [1] : []
    content {
      sid       = "DecryptProtectedObjects"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = var.source_kms_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }

  # Server-side copy of large objects: one request reads the source and writes the vault, so
  # this role may add new versions under the vault's v1/*/objects/ prefix (Object Lock makes
  # them immutable). It writes nothing in this account.
  statement {
    sid       = "CopyLargeObjectsIntoVault"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = [local.vault_objects_arn]
  }

  statement {
    sid       = "VaultKeyForServerSideCopy"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.vault_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "read" {
  name   = "${var.name_prefix}-read-${local.region}"
  role   = local.read_role_id
  policy = data.aws_iam_policy_document.read.json
}

# ---------------------------------------------------------------- optional restore target role
# Restores that write this account's protected buckets (an in-place rollback, a copy into another
# protected bucket, a deleted bucket created again) go through this role: the vault's restore
# function writes the objects, its api function checks the target, creates it and writes the
# run's marker. Both present the external id.
data "aws_iam_policy_document" "target_trust" {
  statement {
    sid     = "VaultRestoreFunctionsOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [local.vault_role_principal]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.external_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:PrincipalArn"
      values   = local.vault_target_functions
    }
  }
}

resource "aws_iam_role" "target" {
  count                = local.create_target_role ? 1 : 0
  name                 = var.restore_target_role_name
  description          = "tidemark restore target - the vault's restore and api functions write restored objects into (and delete newer ones from) the protected buckets, and create a deleted one again. Only with enable_restore_target_role."
  max_session_duration = 3600
  assume_role_policy   = data.aws_iam_policy_document.target_trust.json
  tags                 = merge(var.tags, { "tidemark:role" = "target" })
}

data "aws_iam_policy_document" "target" {
  statement {
    sid    = "RestoreProtectedObjects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:GetObjectTagging",
      "s3:GetObjectVersionTagging",
      "s3:PutObject",
      "s3:PutObjectTagging",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = local.protected_object_arns
  }

  statement {
    sid       = "ListProtectedBuckets"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation", "s3:GetBucketVersioning"]
    resources = local.protected_bucket_arns
  }

  statement {
    sid       = "CreateDeletedProtectedBuckets"
    effect    = "Allow"
    actions   = ["s3:CreateBucket"]
    resources = local.protected_bucket_arns
  }

  statement {
    sid       = "ReadVaultObjects"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.vault_objects_arn]
  }

  statement {
    sid       = "VaultKeyDecrypt"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [var.vault_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = local.has_source_kms_keys ? [1] : []
    content {
      sid       = "ProtectedObjectsKeys"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.source_kms_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "target" {
  count  = var.enable_restore_target_role ? 1 : 0
  name   = "${var.name_prefix}-restore-target-${local.region}"
  role   = local.target_role_id
  policy = data.aws_iam_policy_document.target.json
}
