# A complete tidemark deployment: one vault account and one source account.
# Add one module "source_*" block (with its own provider) per further source account or region.

provider "aws" {
  alias  = "vault"
  region = var.region

  dynamic "assume_role" {
    for_each = var.vault_account_role_arn == "" ? [] : [var.vault_account_role_arn]
    content {
      role_arn = assume_role.value
    }
  }
}

provider "aws" {
  alias  = "source"
  region = var.region

  dynamic "assume_role" {
    for_each = var.source_account_role_arn == "" ? [] : [var.source_account_role_arn]
    content {
      role_arn = assume_role.value
    }
  }
}

module "vault" {
  source    = "../../modules/vault-account"
  providers = { aws = aws.vault }

  source_account_ids     = [var.source_account_id]
  protected_bucket_names = var.protected_bucket_names
  external_id            = var.external_id
  alarm_email            = var.alarm_email
  lambda_package_dir     = var.lambda_package_dir
  # The daily reconciliation reads the newest inventory report the source account delivers.
  inventory_destination = module.source.inventory_destination

  # Defaults shown for the knobs people most often change.
  vault_retention_days        = 35
  checkpoint_interval_minutes = 15
  worker_max_concurrency      = 100
  enable_restore_target_role  = false

  tags = { project = "tidemark" }
}

module "source" {
  source    = "../../modules/source-account"
  providers = { aws = aws.source }

  vault_account_id    = module.vault.vault_account_id
  vault_role_prefix   = module.vault.function_role_prefix
  vault_event_bus_arn = module.vault.vault_event_bus_arn
  vault_bucket_name   = module.vault.vault_bucket_name
  vault_kms_key_arn   = module.vault.vault_kms_key_arn
  external_id         = var.external_id

  protected_bucket_names     = var.protected_bucket_names
  enable_restore_target_role = false

  tags = { project = "tidemark" }
}
