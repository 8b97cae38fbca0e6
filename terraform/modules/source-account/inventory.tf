# Bucket that receives the protected buckets' S3 Inventory reports (unless an existing one is
# named in inventory_bucket_name). The inventory configurations themselves are put by the
# bucket-setup function (bucket_setup.tf), because the protected buckets already exist.

resource "aws_s3_bucket" "inventory" {
  #checkov:skip=CKV_AWS_18:Inventory reports are rewritten daily and read only by the vault's seeder (CloudTrail data events cover reads); a log bucket per source account adds nothing.
  #checkov:skip=CKV_AWS_145:SSE-S3: an SSE-KMS destination would need a CMK in every source account that S3 Inventory and the vault's read role are both granted.
  #checkov:skip=CKV_AWS_144:Inventory reports are regenerated daily; replicating them elsewhere adds nothing.
  #checkov:skip=CKV2_AWS_62:The seeder reads the newest manifest when it runs; nothing consumes events about new reports.
  count  = local.create_inventory_bucket ? 1 : 0
  bucket = local.inventory_bucket_name
  tags   = merge(var.tags, { "tidemark:component" = "inventory" })
}

resource "aws_s3_bucket_versioning" "inventory" {
  count  = local.create_inventory_bucket ? 1 : 0
  bucket = aws_s3_bucket.inventory[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "inventory" {
  count  = local.create_inventory_bucket ? 1 : 0
  bucket = aws_s3_bucket.inventory[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "inventory" {
  count  = local.create_inventory_bucket ? 1 : 0
  bucket = aws_s3_bucket.inventory[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "inventory" {
  count                   = local.create_inventory_bucket ? 1 : 0
  bucket                  = aws_s3_bucket.inventory[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "inventory" {
  count  = local.create_inventory_bucket ? 1 : 0
  bucket = aws_s3_bucket.inventory[0].id
  rule {
    id     = "expire-old-reports"
    status = "Enabled"
    filter {}
    expiration {
      days = 14
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "inventory" {
  count      = local.create_inventory_bucket ? 1 : 0
  bucket     = aws_s3_bucket.inventory[0].id
  policy     = data.aws_iam_policy_document.inventory_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.inventory]
}

data "aws_iam_policy_document" "inventory_bucket" {
  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    actions   = ["s3:*"]
    resources = [local.inventory_bucket_arn, "${local.inventory_bucket_arn}/*"]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid    = "S3InventoryDelivery"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    actions   = ["s3:PutObject"]
    resources = ["${local.inventory_bucket_arn}/${var.inventory_prefix}/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = local.protected_bucket_arns
    }
  }
}
