# The catalog (docs/catalog.md): an Athena/Glue table over s3://<vault>/v1/<source>/catalog/,
# where index segments of format version 3 keep their capture records, one JSON record a line
# and nothing else, so Athena reads the vault's history with the one schema docs/catalog.md
# documents. One partition per protected bucket, projected from their names, so that no crawler
# or MSCK REPAIR has to find them.
# Mirrors CatalogDatabase and CatalogTable in cloudformation/vault-account.yaml;
# tests/iac/test_catalog.py checks both sides' columns against the document.

resource "aws_glue_catalog_database" "catalog" {
  # Athena refuses hyphens in database names, which the name prefix may have.
  name        = "${replace(var.name_prefix, "-", "_")}_catalog"
  description = "tidemark: the capture records of the vault ${aws_s3_bucket.vault.bucket} (docs/catalog.md)"
}

resource "aws_glue_catalog_table" "catalog" {
  name          = "records"
  database_name = aws_glue_catalog_database.catalog.name
  description   = "One row per capture record: which versions of a key existed and when, what changed under a prefix (docs/catalog.md)."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    classification              = "json"
    EXTERNAL                    = "TRUE"
    "projection.enabled"        = "true"
    "projection.source.type"    = "enum"
    "projection.source.values"  = join(",", var.protected_bucket_names)
    "storage.location.template" = "s3://${aws_s3_bucket.vault.bucket}/v1/$${source}/catalog/"
  }

  partition_keys {
    name    = "source"
    type    = "string"
    comment = "The source bucket (equal to the records' bucket): one partition per protected bucket."
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.vault.bucket}/v1/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      name                  = "catalog-json"
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
    }

    columns {
      name = "bucket"
      type = "string"
    }

    columns {
      name = "key"
      type = "string"
    }

    columns {
      name = "version_id"
      type = "string"
    }

    columns {
      name = "event_time"
      type = "string"
    }

    columns {
      name = "sequencer"
      type = "string"
    }

    columns {
      name = "captured_at"
      type = "string"
    }

    columns {
      name = "kind"
      type = "string"
    }

    columns {
      name = "size"
      type = "bigint"
    }

    columns {
      name = "etag"
      type = "string"
    }

    columns {
      name = "checksum"
      type = "struct<algorithm:string,value:string>"
    }

    columns {
      name = "content_type"
      type = "string"
    }

    columns {
      name = "metadata"
      type = "map<string,string>"
    }

    columns {
      name = "location"
      type = "struct<type:string,pack:string,offset:bigint,length:bigint,raw_length:bigint,codec:string,envelope:struct<key_id:string,wrapped_key:string>,key:string,version_id:string,etag:string,part_size:bigint>"
    }

    columns {
      name = "last_modified"
      type = "string"
    }

    columns {
      name = "cache_control"
      type = "string"
    }

    columns {
      name = "content_encoding"
      type = "string"
    }

    columns {
      name = "content_disposition"
      type = "string"
    }

    columns {
      name = "content_language"
      type = "string"
    }

    columns {
      name = "expires"
      type = "string"
    }

    columns {
      name = "website_redirect_location"
      type = "string"
    }

    columns {
      name = "tags"
      type = "map<string,string>"
    }

    columns {
      name = "storage_class"
      type = "string"
    }

    columns {
      name = "source_checksum"
      type = "struct<algorithm:string,value:string,kind:string>"
    }

    columns {
      name = "sse"
      type = "struct<algorithm:string,kms_key_id:string,bucket_key:boolean,customer_key:boolean>"
    }

    columns {
      name = "object_lock"
      type = "struct<mode:string,retain_until:string,legal_hold:boolean>"
    }

    columns {
      name = "acl"
      type = "struct<owner:string,grants:array<struct<grantee:struct<type:string,id:string,uri:string,address:string>,permission:string>>>"
    }

    columns {
      name = "archived"
      type = "string"
    }
  }
}
