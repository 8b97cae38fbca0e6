# Restore API (api/openapi.yaml): POST /restores, GET /restores, GET /restores/{restore_id}, each
# IAM-authorised (SigV4) and proxied to the api function, whose router (tidemark_api::router, the
# same that `tidemark serve` serves) checks the request and answers with JSON. The stage, v1, is
# the first segment of the path the router sees (lambda_http puts it there), so the URL
# <api>/v1/restores is the document's path. Requests are checked by the router, not by an API
# Gateway model, so that every refusal has the same JSON form and names the field.

resource "aws_api_gateway_rest_api" "restore" {
  name        = "${var.name_prefix}-restore-api"
  description = "tidemark point-in-time restore API (IAM / SigV4 auth; api/openapi.yaml)"

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_resource" "restores" {
  rest_api_id = aws_api_gateway_rest_api.restore.id
  parent_id   = aws_api_gateway_rest_api.restore.root_resource_id
  path_part   = "restores"
}

resource "aws_api_gateway_resource" "restore" {
  rest_api_id = aws_api_gateway_rest_api.restore.id
  parent_id   = aws_api_gateway_resource.restores.id
  path_part   = "{restore_id}"
}

locals {
  # operation => (resource, method)
  api_methods = {
    start  = { resource = aws_api_gateway_resource.restores.id, method = "POST" }
    list   = { resource = aws_api_gateway_resource.restores.id, method = "GET" }
    status = { resource = aws_api_gateway_resource.restore.id, method = "GET" }
  }
}

# API Gateway checks that a request's path and query parameters are present; the router checks
# the rest, so that every refusal has the same JSON form.
resource "aws_api_gateway_request_validator" "parameters" {
  rest_api_id                 = aws_api_gateway_rest_api.restore.id
  name                        = "parameters"
  validate_request_body       = false
  validate_request_parameters = true
}

resource "aws_api_gateway_method" "restore_api" {
  for_each             = local.api_methods
  rest_api_id          = aws_api_gateway_rest_api.restore.id
  resource_id          = each.value.resource
  http_method          = each.value.method
  authorization        = "AWS_IAM"
  request_validator_id = aws_api_gateway_request_validator.parameters.id
}

resource "aws_api_gateway_integration" "restore_api" {
  for_each                = local.api_methods
  rest_api_id             = aws_api_gateway_rest_api.restore.id
  resource_id             = each.value.resource
  http_method             = aws_api_gateway_method.restore_api[each.key].http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this["api"].invoke_arn
  timeout_milliseconds    = 29000
}

resource "aws_api_gateway_deployment" "restore" {
  rest_api_id = aws_api_gateway_rest_api.restore.id
  description = "tidemark restore API"

  triggers = {
    redeployment = sha1(jsonencode([
      aws_api_gateway_resource.restores.id,
      aws_api_gateway_resource.restore.id,
      aws_api_gateway_method.restore_api["start"].id,
      aws_api_gateway_method.restore_api["list"].id,
      aws_api_gateway_method.restore_api["status"].id,
      aws_api_gateway_integration.restore_api["start"].id,
      aws_api_gateway_integration.restore_api["list"].id,
      aws_api_gateway_integration.restore_api["status"].id,
    ]))
  }

  depends_on = [aws_api_gateway_integration.restore_api]

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "restore_api" {
  name              = "/aws/apigateway/${var.name_prefix}-restore-api"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.vault.arn
  tags              = var.tags
}

resource "aws_api_gateway_stage" "v1" {
  #checkov:skip=CKV_AWS_120:POST /restores starts a restore and GET answers a run's progress; responses must never be served from a cache.
  #checkov:skip=CKV2_AWS_29:Every request is SigV4-signed and IAM-authorised; a WAF web ACL can be attached by the customer.
  #checkov:skip=CKV2_AWS_51:The backend is a Lambda proxy integration, not an HTTP endpoint that could verify a client certificate.
  rest_api_id          = aws_api_gateway_rest_api.restore.id
  deployment_id        = aws_api_gateway_deployment.restore.id
  stage_name           = "v1"
  xray_tracing_enabled = true

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.restore_api.arn
    format = jsonencode({
      requestId        = "$context.requestId"
      ip               = "$context.identity.sourceIp"
      caller           = "$context.identity.caller"
      user             = "$context.identity.userArn"
      requestTime      = "$context.requestTime"
      httpMethod       = "$context.httpMethod"
      resourcePath     = "$context.resourcePath"
      status           = "$context.status"
      protocol         = "$context.protocol"
      responseLength   = "$context.responseLength"
      integrationError = "$context.integration.error"
    })
  }

  tags       = var.tags
  depends_on = [aws_api_gateway_account.this]
}

resource "aws_api_gateway_method_settings" "all" {
  #checkov:skip=CKV_AWS_225:POST /restores starts a restore and GET answers a run's progress; responses must never be served from a cache.
  rest_api_id = aws_api_gateway_rest_api.restore.id
  stage_name  = aws_api_gateway_stage.v1.stage_name
  method_path = "*/*"

  settings {
    logging_level          = "INFO"
    metrics_enabled        = true
    data_trace_enabled     = false
    throttling_burst_limit = 20
    throttling_rate_limit  = 10
  }
}

resource "aws_lambda_permission" "restore_api" {
  statement_id  = "restore-api"
  function_name = aws_lambda_function.this["api"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.restore.execution_arn}/*/*/restores*"
}

# ---------------------------------------------------------------- API Gateway logging role (account-wide)
data "aws_iam_policy_document" "apigateway_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "apigateway_logs" {
  count              = var.manage_api_gateway_account ? 1 : 0
  name_prefix        = "${var.name_prefix}-apigw-logs-"
  description        = "Lets API Gateway write the restore API's execution and access logs (account-wide API Gateway setting)."
  assume_role_policy = data.aws_iam_policy_document.apigateway_assume.json
  tags               = merge(var.tags, { "tidemark:role" = "apigateway-logs" })
}

data "aws_iam_policy_document" "apigateway_logs" {
  statement {
    sid    = "ApiGatewayLogs"
    effect = "Allow"
    actions = [
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:DescribeLogGroups",
      "logs:DescribeLogStreams",
      "logs:PutLogEvents",
      "logs:GetLogEvents",
      "logs:FilterLogEvents",
    ]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "apigateway_logs" {
  count  = var.manage_api_gateway_account ? 1 : 0
  name   = "apigateway-logs"
  role   = aws_iam_role.apigateway_logs[0].id
  policy = data.aws_iam_policy_document.apigateway_logs.json
}

resource "aws_api_gateway_account" "this" {
  count               = var.manage_api_gateway_account ? 1 : 0
  cloudwatch_role_arn = aws_iam_role.apigateway_logs[0].arn
}
