data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.id
  partition  = data.aws_partition.current.partition

  vault_bucket_name = var.vault_bucket_name != "" ? var.vault_bucket_name : "${var.name_prefix}-vault-${local.account_id}-${local.region}"

  # The eight Lambda binaries of package tidemark-lambda (crates/lambda), one zip each.
  # Same settings as cloudformation/vault-account.yaml; tests/iac/test_parity.py compares them.
  functions = {
    seeder = {
      binary      = "tidemark-seeder"
      memory      = 1024
      timeout     = 900
      reserved    = -1
      description = "Reads the newest S3 Inventory report, cuts partitions, enqueues work tasks; daily reconciliation."
    }
    worker = {
      binary      = "tidemark-worker"
      memory      = var.worker_memory_mb
      timeout     = 900
      reserved    = -1
      description = "Copies one partition task into the vault (packs for small objects, server-side copies for large ones)."
    }
    delta = {
      binary      = "tidemark-delta"
      memory      = 1024
      timeout     = 300
      reserved    = -1
      description = "Captures S3 Object Created / Object Deleted events (de-duplicated) into packs and delta index segments."
    }
    checkpoint = {
      binary      = "tidemark-checkpoint"
      memory      = 512
      timeout     = 300
      reserved    = var.checkpoint_reserved_concurrency
      description = "Every checkpoint_interval_minutes, computes the watermark and seals a recovery point; emits Tidemark/RpoSeconds."
    }
    restore = {
      binary      = "tidemark-restore"
      memory      = 2048
      timeout     = 900
      reserved    = -1
      description = "Plans point-in-time restores and restores their tasks from the restore queue, verifying every object; writes targets in source accounts through their restore target role."
    }
    api = {
      binary      = "tidemark-api"
      memory      = 512
      timeout     = 30
      reserved    = -1
      description = "The restore REST API behind API Gateway (api/openapi.yaml): starts restore runs on the restore queue and reports their status."
    }
    scrub = {
      binary      = "tidemark-scrub"
      memory      = 1024
      timeout     = 900
      reserved    = -1
      description = "On scrub_schedule, verifies the vault in time-budgeted steps (each continues from the cursor in the control table); emits VerifyDamaged and VerifyBytes."
    }
    alert = {
      binary      = "tidemark-alert"
      memory      = 256
      timeout     = 30
      reserved    = -1
      description = "Every 5 minutes, sweeps the work, delta and restore dead-letter queues: publishes one alert per new dead-lettered message to the alarm topic and leaves the message on its queue."
    }
  }

  # The functions that run the pipeline share one environment; scrub and alert get only what their code reads.
  pipeline_functions = ["seeder", "worker", "delta", "checkpoint", "restore", "api"]

  # Every function's configuration requires these (tidemark_lambda::LambdaConfig::from_lookup).
  base_environment = {
    TIDEMARK_VAULT_BUCKET      = aws_s3_bucket.vault.id
    TIDEMARK_CONTROL_TABLE     = aws_dynamodb_table.control.name
    TIDEMARK_WORK_QUEUE_URL    = aws_sqs_queue.main["work"].url
    TIDEMARK_DELTA_QUEUE_URL   = aws_sqs_queue.main["delta"].url
    TIDEMARK_RESTORE_QUEUE_URL = aws_sqs_queue.main["restore"].url
    RUST_LOG                   = "info"
  }

  pipeline_environment = merge(local.base_environment, {
    TIDEMARK_SOURCE_ROLE_NAME   = var.source_read_role_name
    TIDEMARK_TARGET_ROLE_NAME   = var.enable_restore_target_role ? var.restore_target_role_name : ""
    TIDEMARK_EXTERNAL_ID        = var.external_id
    TIDEMARK_SOURCE_ACCOUNT_IDS = join(",", var.source_account_ids)
    TIDEMARK_BUCKET_ACCOUNTS    = var.bucket_accounts
    TIDEMARK_METRICS_NAMESPACE  = var.metrics_namespace
    TIDEMARK_LATE_EVENT_SECONDS = var.late_event_seconds
    TIDEMARK_STEP_SECONDS       = var.step_seconds
    TIDEMARK_ALL_VERSIONS       = var.all_versions
    TIDEMARK_PREFIX_CEILING_RPS = var.prefix_ceiling_rps > 0 ? var.prefix_ceiling_rps : ""
    TIDEMARK_BACKUP_SHARE       = var.backup_share
    # Packs are sealed under data keys of the vault key, and vault writes name it for SSE-KMS.
    TIDEMARK_KMS_KEY_ARN = aws_kms_key.vault.arn
  })

  function_environment = {
    seeder     = local.pipeline_environment
    worker     = local.pipeline_environment
    delta      = local.pipeline_environment
    checkpoint = local.pipeline_environment
    restore    = local.pipeline_environment
    api        = local.pipeline_environment
    # The scrub reads the vault with its own role (no source role) and prints EMF in the namespace.
    scrub = merge(local.base_environment, {
      TIDEMARK_METRICS_NAMESPACE   = var.metrics_namespace
      TIDEMARK_VERIFY_SAMPLE       = var.verify_sample
      TIDEMARK_VERIFY_STEP_SECONDS = var.verify_step_seconds
    })
    alert = merge(local.base_environment, {
      TIDEMARK_ALERT_TOPIC_ARN        = aws_sns_topic.alarms.arn
      TIDEMARK_DEAD_LETTER_QUEUE_URLS = join(",", [for q in local.alerted_dead_letter_queues : aws_sqs_queue.dlq[q].url])
    })
  }

  # Visibility timeout = 6 x the consuming function's timeout (AWS's advice for SQS event sources).
  queues = {
    work    = { visibility_timeout = 5400 }
    delta   = { visibility_timeout = 1800 }
    restore = { visibility_timeout = 5400 }
  }

  event_sources = {
    worker = {
      queue           = "work"
      batch_size      = 1
      batching_window = 0
      max_concurrency = var.worker_max_concurrency
    }
    delta = {
      queue           = "delta"
      batch_size      = 100
      batching_window = 10
      max_concurrency = var.delta_max_concurrency
    }
    restore = {
      queue           = "restore"
      batch_size      = 1
      batching_window = 0
      max_concurrency = var.restore_max_concurrency
    }
  }

  # Functions invoked asynchronously (schedules, async restores); failed invocations land in the async DLQ.
  async_functions = {
    seeder     = "tidemark-seeder"
    checkpoint = "tidemark-checkpoint"
    restore    = "tidemark-restore"
    scrub      = "tidemark-scrub"
  }

  # The alert function sweeps these dead-letter queues (tidemark_core::alert::sweep).
  alerted_dead_letter_queues = ["work", "delta", "restore"]

  source_read_role_arns    = "arn:${local.partition}:iam::*:role/${var.source_read_role_name}"
  restore_target_role_arns = "arn:${local.partition}:iam::*:role/${var.restore_target_role_name}"

  # Copy-mode targets in this account: their buckets, and the marker a run keeps in one while it writes.
  restore_target_buckets = "arn:${local.partition}:s3:::${var.restore_target_bucket_prefix}*"
  restore_target_markers = "arn:${local.partition}:s3:::${var.restore_target_bucket_prefix}*/*.tidemark-restore/*"

  use_s3_artifacts = var.lambda_s3_bucket != ""

  # One dashboard JSON for both deploy paths (CloudFormation embeds a checked copy).
  dashboard_template = "${path.module}/../../../infra/dashboard.json"

  checkpoint_rate = var.checkpoint_interval_minutes == 1 ? "rate(1 minute)" : "rate(${var.checkpoint_interval_minutes} minutes)"
}
