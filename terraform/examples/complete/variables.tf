variable "region" {
  description = "Region of the vault and of the protected buckets."
  type        = string
  default     = "eu-west-1"
}

variable "vault_account_role_arn" {
  description = "Role Terraform assumes in the vault account (empty: use the ambient credentials)."
  type        = string
  default     = ""
}

variable "source_account_role_arn" {
  description = "Role Terraform assumes in the source account (empty: use the ambient credentials)."
  type        = string
  default     = ""
}

variable "source_account_id" {
  description = "The account that owns the protected buckets."
  type        = string
}

variable "protected_bucket_names" {
  description = "Buckets to protect (in source_account_id, in var.region)."
  type        = list(string)
}

variable "external_id" {
  description = "Shared secret-ish string the vault functions present to the source read role (`openssl rand -hex 20`)."
  type        = string
  sensitive   = true
}

variable "alarm_email" {
  description = "Where the alarms go (confirm the SNS subscription e-mail)."
  type        = string
  default     = ""
}

variable "lambda_package_dir" {
  description = "Output of `make package ARCH=arm64` (target/lambda at the repository root)."
  type        = string
  default     = "../../../target/lambda"
}
