output "read_role_arn" {
  description = "The role the vault account assumes (with the external id) to read the protected buckets."
  value       = var.create_account_wide_resources ? aws_iam_role.read[0].arn : null
}

output "restore_target_role_arn" {
  description = "The restore target role (null unless enable_restore_target_role)."
  value       = local.create_target_role ? aws_iam_role.target[0].arn : null
}

output "inventory_bucket_name" {
  description = "Bucket that receives the inventory reports."
  value       = local.inventory_bucket_name
}

output "inventory_manifest_prefix" {
  description = "Inventory reports land under s3://<bucket>/<prefix>/<source bucket>/tidemark/ (first report within 48 hours)."
  value       = var.inventory_prefix
}

output "inventory_destination" {
  description = "Give it to the vault module as inventory_destination; the daily reconciliation reads the newest report there."
  value       = "s3://${local.inventory_bucket_name}/${var.inventory_prefix}"
}

output "protected_buckets" {
  description = "Buckets whose notification and inventory configuration the setup function manages."
  value       = jsondecode(aws_lambda_invocation.bucket_setup.result)["Buckets"]
}

output "forward_rule_arn" {
  description = "The rule that forwards S3 events to the vault bus."
  value       = aws_cloudwatch_event_rule.forward.arn
}
