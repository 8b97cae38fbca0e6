output "vault_bucket_name" {
  description = "The vault bucket."
  value       = module.vault.vault_bucket_name
}

output "restore_api_url" {
  description = "POST <url>/restores with a SigV4-signed restore request."
  value       = module.vault.restore_api_url
}

output "dashboard_url" {
  description = "The CloudWatch dashboard."
  value       = module.vault.dashboard_url
}

output "read_role_arn" {
  description = "The role the vault assumes in the source account."
  value       = module.source.read_role_arn
}

output "inventory_bucket_name" {
  description = "Where the S3 Inventory reports land."
  value       = module.source.inventory_bucket_name
}
