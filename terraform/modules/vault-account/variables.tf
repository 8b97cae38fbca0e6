# Every variable has the same name, meaning and default as the matching parameter of
# cloudformation/vault-account.yaml (NamePrefix <-> name_prefix, ...).

variable "name_prefix" {
  description = "Prefix of every resource name (functions, roles, queues, table, bus)."
  type        = string
  default     = "tidemark"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix must match ^[a-z][a-z0-9-]{1,20}$."
  }
}

variable "source_account_ids" {
  description = "AWS account ids of the source (protected) accounts. At least one."
  type        = list(string)

  validation {
    condition     = length(var.source_account_ids) > 0 && alltrue([for id in var.source_account_ids : can(regex("^[0-9]{12}$", id))])
    error_message = "source_account_ids must hold at least one 12-digit account id."
  }
}

variable "protected_bucket_names" {
  description = "The protected buckets (in the source accounts); the checkpoint seals a recovery point for each and the reconciliation covers each."
  type        = list(string)

  validation {
    condition     = length(var.protected_bucket_names) > 0
    error_message = "protected_bucket_names must name at least one bucket."
  }
}

variable "external_id" {
  description = "External id the functions present when they assume the source accounts' roles; give the same value to the source-account module. Generate one, e.g. `openssl rand -hex 20`."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.external_id) >= 16
    error_message = "external_id must be at least 16 characters."
  }
}

variable "source_read_role_name" {
  description = "Name of the read-only role the source-account module creates in every source account."
  type        = string
  default     = "tidemark-backup-read"
}

variable "bucket_accounts" {
  description = "Which source account owns each protected bucket, as bucket=account,bucket=account. Needed when source_account_ids holds more than one account (with one, every bucket belongs to it); a bucket the functions cannot place is refused with an error naming it."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_accounts == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]=[0-9]{12}(,[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]=[0-9]{12})*$", var.bucket_accounts))
    error_message = "bucket_accounts must be empty or bucket=account[,bucket=account...] with 12-digit account ids."
  }
}

variable "vault_bucket_name" {
  description = "Name of the vault bucket. Empty means <name_prefix>-vault-<account>-<region>."
  type        = string
  default     = ""
}

variable "vault_retention_days" {
  description = "Object Lock COMPLIANCE default retention in days. Nobody, not even the root user, can delete a version before it expires."
  type        = number
  default     = 35
}

variable "noncurrent_version_expiration_days" {
  description = "Lifecycle expiry of noncurrent vault versions (keep it above vault_retention_days)."
  type        = number
  default     = 36
}

variable "access_log_retention_days" {
  description = "Days the vault bucket's server access logs are kept."
  type        = number
  default     = 365
}

variable "lambda_package_dir" {
  description = "Directory with the `make package` output (<dir>/<binary>/bootstrap.zip). Used when lambda_s3_bucket is empty."
  type        = string
  default     = ""
}

variable "lambda_s3_bucket" {
  description = "S3 bucket holding the function zips (<lambda_s3_prefix><binary>/bootstrap.zip), as the CloudFormation template expects. Empty means upload from lambda_package_dir."
  type        = string
  default     = ""
}

variable "lambda_s3_prefix" {
  description = "Key prefix of the zips in lambda_s3_bucket."
  type        = string
  default     = "tidemark/"
}

variable "lambda_architecture" {
  description = "arm64 or x86_64; must match the zips (`make package ARCH=arm64` for arm64)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "worker_memory_mb" {
  description = "Memory of the worker function."
  type        = number
  default     = 2048
}

variable "worker_max_concurrency" {
  description = "Maximum concurrent worker invocations fed by the work queue (SQS event source MaximumConcurrency, 2-1000)."
  type        = number
  default     = 100
}

variable "delta_max_concurrency" {
  description = "Maximum concurrent delta invocations (2-1000)."
  type        = number
  default     = 20
}

variable "restore_max_concurrency" {
  description = "Maximum concurrent restore-task invocations (2-1000)."
  type        = number
  default     = 50
}

variable "checkpoint_reserved_concurrency" {
  description = "Reserved concurrency of the checkpoint function; -1 leaves it unreserved (new accounts with a 10-execution quota cannot reserve any)."
  type        = number
  default     = -1
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to its dead-letter queue."
  type        = number
  default     = 5
}

variable "checkpoint_interval_minutes" {
  description = "How often the checkpoint function seals a recovery point (1-60 minutes; the RPO floor)."
  type        = number
  default     = 15

  validation {
    condition     = var.checkpoint_interval_minutes >= 1 && var.checkpoint_interval_minutes <= 60
    error_message = "checkpoint_interval_minutes must be between 1 and 60."
  }
}

variable "reconciliation_schedule" {
  description = "When the seeder compares the newest inventory report with the catalog (after the daily inventory lands)."
  type        = string
  default     = "cron(30 6 * * ? *)"
}

variable "late_event_seconds" {
  description = "Seconds a recovery point stays behind the oldest unhandled change, for events still in flight (TIDEMARK_LATE_EVENT_SECONDS)."
  type        = number
  default     = 60
}

variable "step_seconds" {
  description = "Seconds a seed plan step works before it hands the rest to a fresh message; keep it below the worker's timeout (TIDEMARK_STEP_SECONDS)."
  type        = number
  default     = 600
}

variable "scrub_schedule" {
  description = "When the scrub function verifies the next stretch of the vault (each run continues where the last one stopped)."
  type        = string
  default     = "rate(1 day)"
}

variable "verify_sample" {
  description = "Share of packs and large copies each scrub pass reads, from 0 (none) to 1 (all) (TIDEMARK_VERIFY_SAMPLE)."
  type        = number
  default     = 1

  validation {
    condition     = var.verify_sample >= 0 && var.verify_sample <= 1
    error_message = "verify_sample must be between 0 and 1."
  }
}

variable "verify_step_seconds" {
  description = "Seconds one scrub invocation verifies before it leaves the rest to the next; below the scrub's 900-second timeout (TIDEMARK_VERIFY_STEP_SECONDS)."
  type        = number
  default     = 600

  validation {
    condition     = var.verify_step_seconds >= 1 && var.verify_step_seconds <= 840
    error_message = "verify_step_seconds must be between 1 and 840."
  }
}

variable "all_versions" {
  description = "Seed every version and delete marker of versioned buckets, not only the current versions (TIDEMARK_ALL_VERSIONS)."
  type        = bool
  default     = false
}

variable "prefix_ceiling_rps" {
  description = "Requests per second per top-level prefix of a source bucket (application and backup together); 0 leaves the per-prefix scheduler off (TIDEMARK_PREFIX_CEILING_RPS)."
  type        = number
  default     = 0
}

variable "backup_share" {
  description = "The share of prefix_ceiling_rps the backup may use, in (0, 1] (TIDEMARK_BACKUP_SHARE)."
  type        = number
  default     = 0.8

  validation {
    condition     = var.backup_share > 0 && var.backup_share <= 1
    error_message = "backup_share must be in (0, 1]."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the metrics the functions print (TIDEMARK_METRICS_NAMESPACE); the dashboard and alarms query it."
  type        = string
  default     = "Tidemark"
}

variable "inventory_destination" {
  description = "Where the source-account stack delivers S3 Inventory reports (its inventory_destination output, s3://<bucket>/<prefix>); the daily reconciliation compares each bucket with its newest complete report there and lists buckets that have none. Empty: always list."
  type        = string
  default     = ""

  validation {
    condition     = var.inventory_destination == "" || startswith(var.inventory_destination, "s3://")
    error_message = "inventory_destination must be empty or an s3:// URL."
  }
}

variable "restore_target_bucket_prefix" {
  description = "Copy-mode restores may write only into buckets whose name starts with this prefix."
  type        = string
  default     = "tidemark-restore-"
}

variable "enable_restore_target_role" {
  description = "Let the restore and api functions assume the restore target role of the source accounts (write, delete, list and create the protected buckets: in-place rollback, restores into another protected bucket or a deleted one). Enable it in the source-account stacks too. Off by default."
  type        = bool
  default     = false
}

variable "restore_target_role_name" {
  description = "Name of the restore target role in the source accounts (TIDEMARK_TARGET_ROLE_NAME); a restore into a protected bucket that names no role assumes it in the bucket's account."
  type        = string
  default     = "tidemark-restore-target"
}

variable "alarm_email" {
  description = "Optional e-mail address subscribed to the alarm topic."
  type        = string
  default     = ""
}

variable "rpo_alarm_threshold_seconds" {
  description = "RPO (seconds since the latest sealed recovery point) above which the RPO alarm fires."
  type        = number
  default     = 1800
}

variable "slowdown_alarm_threshold" {
  description = "503 SlowDown responses per 5 minutes that raise an alarm."
  type        = number
  default     = 1000
}

variable "function_error_alarm_threshold" {
  description = "Function errors per 5 minutes that raise an alarm."
  type        = number
  default     = 1
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's log groups."
  type        = number
  default     = 365
}

variable "manage_api_gateway_account" {
  description = "Set this region's API Gateway CloudWatch Logs role (an account-wide setting; false if the account already has one)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
