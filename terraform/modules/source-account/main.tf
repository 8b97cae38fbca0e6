data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.id
  partition  = data.aws_partition.current.partition

  create_inventory_bucket = var.inventory_bucket_name == ""
  inventory_bucket_name   = local.create_inventory_bucket ? "${var.name_prefix}-inventory-${local.account_id}-${local.region}" : var.inventory_bucket_name
  inventory_bucket_arn    = "arn:${local.partition}:s3:::${local.inventory_bucket_name}"

  protected_bucket_arns  = [for b in var.protected_bucket_names : "arn:${local.partition}:s3:::${b}"]
  protected_object_arns  = [for b in var.protected_bucket_names : "arn:${local.partition}:s3:::${b}/*"]
  has_source_kms_keys    = length(var.source_kms_key_arns) > 0
  create_target_role     = var.create_account_wide_resources && var.enable_restore_target_role
  read_role_id           = var.create_account_wide_resources ? aws_iam_role.read[0].id : var.read_role_name
  target_role_id         = local.create_target_role ? aws_iam_role.target[0].id : var.restore_target_role_name
  vault_objects_arn      = "arn:${local.partition}:s3:::${var.vault_bucket_name}/v1/*/objects/*"
  vault_role_principal   = "arn:${local.partition}:iam::${var.vault_account_id}:root"
  vault_function_roles   = "arn:${local.partition}:iam::${var.vault_account_id}:role/${var.vault_role_prefix}*"
  vault_target_functions = [for f in ["restore", "api"] : "arn:${local.partition}:iam::${var.vault_account_id}:role/${var.vault_role_prefix}${f}"]
}
