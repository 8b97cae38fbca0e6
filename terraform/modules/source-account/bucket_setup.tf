# EventBridge delivery + S3 Inventory for the protected buckets.
#
# Why not aws_s3_bucket_notification: that resource owns a bucket's WHOLE notification
# configuration. Declaring it with `eventbridge = true` silently deletes every queue, topic and
# Lambda notification the bucket already has (a known trap), and two stacks managing the same
# bucket fight over it. This module therefore uses the same small function as the
# CloudFormation template: it reads the existing configuration, adds EventBridgeConfiguration
# and writes it back (on destroy it removes only that, and only if tidemark turned it on), and
# puts the "tidemark" inventory configuration (by id, leaving other inventories alone).
# aws_lambda_invocation with lifecycle_scope = "CRUD" calls it on create, update and destroy.

data "archive_file" "bucket_setup" {
  type        = "zip"
  output_path = "${path.module}/.build/bucket_setup.zip"

  source {
    content  = file("${path.module}/bucket_setup.py")
    filename = "index.py"
  }
}

resource "aws_cloudwatch_log_group" "bucket_setup" {
  #checkov:skip=CKV_AWS_158:Holds only the setup function's own log lines (bucket names, configuration changes), no object data; a CMK per source account adds cost, not protection.
  name              = "/aws/lambda/${var.name_prefix}-bucket-setup"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

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

resource "aws_iam_role" "bucket_setup" {
  name_prefix        = "${var.name_prefix}-bucket-setup-"
  description        = "tidemark bucket setup - merges EventBridge delivery into the protected buckets' notification configuration and manages their tidemark inventory configuration."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = merge(var.tags, { "tidemark:role" = "bucket-setup" })
}

data "aws_iam_policy_document" "bucket_setup" {
  statement {
    sid       = "WriteOwnLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.bucket_setup.arn}:*"]
  }

  statement {
    sid    = "NotificationAndInventoryConfiguration"
    effect = "Allow"
    actions = [
      "s3:GetBucketNotification",
      "s3:PutBucketNotification",
      "s3:GetInventoryConfiguration",
      "s3:PutInventoryConfiguration",
    ]
    resources = local.protected_bucket_arns
  }
}

resource "aws_iam_role_policy" "bucket_setup" {
  name   = "bucket-setup"
  role   = aws_iam_role.bucket_setup.id
  policy = data.aws_iam_policy_document.bucket_setup.json
}

resource "aws_lambda_function" "bucket_setup" {
  #checkov:skip=CKV_AWS_115:Runs only during terraform apply/destroy, one invocation at a time.
  #checkov:skip=CKV_AWS_116:Invoked synchronously by Terraform, which reports failures itself.
  #checkov:skip=CKV_AWS_117:Calls only the S3 control API; no VPC resources.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the customer owns; the code is in this module.
  #checkov:skip=CKV_AWS_50:A configuration call made at deploy time; X-Ray traces would show nothing the logs do not.
  function_name    = "${var.name_prefix}-bucket-setup"
  description      = "tidemark bucket setup (EventBridge notification merge + S3 Inventory configuration)"
  runtime          = "python3.12"
  handler          = "index.handler"
  architectures    = ["arm64"]
  memory_size      = 128
  timeout          = 300
  role             = aws_iam_role.bucket_setup.arn
  filename         = data.archive_file.bucket_setup.output_path
  source_code_hash = data.archive_file.bucket_setup.output_base64sha256

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.bucket_setup.name
  }

  tags       = merge(var.tags, { "tidemark:function" = "bucket-setup" })
  depends_on = [aws_iam_role_policy.bucket_setup]
}

resource "aws_lambda_invocation" "bucket_setup" {
  function_name   = aws_lambda_function.bucket_setup.function_name
  lifecycle_scope = "CRUD"

  input = jsonencode({
    Buckets            = var.protected_bucket_names
    AccountId          = local.account_id
    InventoryBucketArn = local.inventory_bucket_arn
    InventoryPrefix    = var.inventory_prefix
    Frequency          = var.inventory_frequency
    IncludedVersions   = var.inventory_included_versions
    Format             = var.inventory_format
  })

  depends_on = [aws_s3_bucket_policy.inventory]
}
