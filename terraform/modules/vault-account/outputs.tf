output "vault_bucket_name" {
  description = "The vault bucket (source-account module input vault_bucket_name)."
  value       = aws_s3_bucket.vault.id
}

output "vault_kms_key_arn" {
  description = "The vault key (source-account module input vault_kms_key_arn)."
  value       = aws_kms_key.vault.arn
}

output "vault_event_bus_arn" {
  description = "The vault event bus (source-account module input vault_event_bus_arn)."
  value       = aws_cloudwatch_event_bus.vault.arn
}

output "vault_account_id" {
  description = "This account (source-account module input vault_account_id)."
  value       = local.account_id
}

output "function_role_prefix" {
  description = "Source read roles trust only vault roles whose name starts with this (source-account module input vault_role_prefix)."
  value       = "${var.name_prefix}-"
}

output "control_table_name" {
  description = "The DynamoDB control table."
  value       = aws_dynamodb_table.control.name
}

output "work_queue_url" {
  description = "The work queue."
  value       = aws_sqs_queue.main["work"].url
}

output "delta_queue_url" {
  description = "The delta queue."
  value       = aws_sqs_queue.main["delta"].url
}

output "restore_queue_url" {
  description = "The restore queue."
  value       = aws_sqs_queue.main["restore"].url
}

output "seeder_function_name" {
  description = "Invoke it to start a seed (see docs/deploy.md)."
  value       = aws_lambda_function.this["seeder"].function_name
}

output "restore_function_name" {
  description = "The restore function (console test events: infra/events/restore-request.json, restore-queue-batch.json)."
  value       = aws_lambda_function.this["restore"].function_name
}

output "api_function_name" {
  description = "The api function behind the restore API (console test events: infra/events/api-*.json)."
  value       = aws_lambda_function.this["api"].function_name
}

output "restore_api_url" {
  description = "The restore API, SigV4-signed (execute-api:Invoke): POST <url>/restores, GET <url>/restores/{restore_id}, GET <url>/restores?source_bucket=B (api/openapi.yaml)."
  value       = aws_api_gateway_stage.v1.invoke_url
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms publish to."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.this.dashboard_name}"
}
