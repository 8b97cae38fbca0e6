# Same names, meanings and defaults as the parameters of cloudformation/source-account.yaml.

variable "name_prefix" {
  description = "Prefix of the resource names in this account."
  type        = string
  default     = "tidemark"
}

variable "vault_account_id" {
  description = "The vault account (vault module output vault_account_id)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.vault_account_id))
    error_message = "vault_account_id must be a 12-digit account id."
  }
}

variable "vault_role_prefix" {
  description = "Only vault-account roles whose name starts with this may assume the read role (vault module output function_role_prefix)."
  type        = string
  default     = "tidemark-"
}

variable "external_id" {
  description = "The same external id that was given to the vault-account module."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.external_id) >= 16
    error_message = "external_id must be at least 16 characters."
  }
}

variable "vault_event_bus_arn" {
  description = "The vault event bus (vault module output vault_event_bus_arn)."
  type        = string
}

variable "vault_bucket_name" {
  description = "The vault bucket (vault module output vault_bucket_name); large objects are copied into it server-side."
  type        = string
}

variable "vault_kms_key_arn" {
  description = "The vault key (vault module output vault_kms_key_arn)."
  type        = string
}

variable "protected_bucket_names" {
  description = "Buckets in this account and region to protect."
  type        = list(string)

  validation {
    condition     = length(var.protected_bucket_names) > 0
    error_message = "protected_bucket_names must name at least one bucket."
  }
}

variable "source_kms_key_arns" {
  description = "KMS keys that encrypt objects in the protected buckets (SSE-KMS); empty if they use SSE-S3."
  type        = list(string)
  default     = []
}

variable "inventory_bucket_name" {
  description = "Existing bucket that receives the inventory reports. Empty creates <name_prefix>-inventory-<account>-<region>."
  type        = string
  default     = ""
}

variable "inventory_prefix" {
  description = "Key prefix of the inventory reports in the inventory bucket."
  type        = string
  default     = "tidemark-inventory"
}

variable "inventory_frequency" {
  description = "Daily or Weekly."
  type        = string
  default     = "Daily"

  validation {
    condition     = contains(["Daily", "Weekly"], var.inventory_frequency)
    error_message = "inventory_frequency must be Daily or Weekly."
  }
}

variable "inventory_included_versions" {
  description = "All (protect every version) or Current."
  type        = string
  default     = "All"

  validation {
    condition     = contains(["All", "Current"], var.inventory_included_versions)
    error_message = "inventory_included_versions must be All or Current."
  }
}

variable "inventory_format" {
  description = "CSV, Parquet or ORC."
  type        = string
  default     = "CSV"

  validation {
    condition     = contains(["CSV", "Parquet", "ORC"], var.inventory_format)
    error_message = "inventory_format must be CSV, Parquet or ORC."
  }
}

variable "read_role_name" {
  description = "Name of the read-only role the vault account assumes."
  type        = string
  default     = "tidemark-backup-read"
}

variable "create_account_wide_resources" {
  description = "Create the IAM roles (global). With one module instance per region, say true in one region only; every region still attaches its own bucket permissions to the role."
  type        = bool
  default     = true
}

variable "enable_restore_target_role" {
  description = "Create the restore target role that lets the vault's restore and api functions write, delete, list and create the protected buckets (in-place rollback, restores into this account). Off by default."
  type        = bool
  default     = false
}

variable "restore_target_role_name" {
  description = "Name of the optional restore target role (the vault's restore_target_role_name)."
  type        = string
  default     = "tidemark-restore-target"
}

variable "log_retention_days" {
  description = "Retention of the bucket-setup function's log group."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
