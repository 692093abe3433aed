output "cluster_name" {
  description = "EKS cluster: aws eks update-kubeconfig --name <this>."
  value       = aws_eks_cluster.main.name
}

output "service_role_arn" {
  description = "IRSA role for the chart: serviceAccount.annotations.\"eks.amazonaws.com/role-arn\"."
  value       = aws_iam_role.services.arn
}

output "kafka_bootstrap_brokers" {
  description = "CEZBEK_KAFKA_BROKERS (TLS) and the KEDA scaler's bootstrapServers."
  value       = aws_msk_cluster.main.bootstrap_brokers_tls
}

output "uploads_bucket" {
  description = "CEZBEK_S3_BUCKET."
  value       = aws_s3_bucket.uploads.bucket
}

output "uploads_queue_url" {
  description = "CEZBEK_SQS_QUEUE_URL."
  value       = aws_sqs_queue.uploads.url
}

output "postgres_address" {
  description = "RDS endpoint (the full URL with its password is in the app secret)."
  value       = aws_db_instance.main.address
}

output "app_secret_name" {
  description = "Secrets Manager secret with the services' environment; the ExternalSecret's key."
  value       = aws_secretsmanager_secret.app.name
}

output "admin_token_secret_name" {
  description = "Secrets Manager secret holding the operator's admin token."
  value       = aws_secretsmanager_secret.admin_token.name
}

output "smtp_endpoint" {
  description = "CEZBEK_SMTP_ADDR (STARTTLS)."
  value       = "email-smtp.${var.region}.amazonaws.com:587"
}

output "ses_dkim_records" {
  description = "CNAME records to add to the sending domain's DNS."
  value = [for token in aws_sesv2_email_identity.digests.dkim_signing_attributes[0].tokens : {
    name  = "${token}._domainkey.${var.ses_domain}"
    type  = "CNAME"
    value = "${token}.dkim.amazonses.com"
  }]
}

output "helm_values" {
  description = "Values for .chart/cezbek that follow from this infrastructure."
  value = {
    serviceAccount = { annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.services.arn } }
    config = {
      CEZBEK_KAFKA_BROKERS            = aws_msk_cluster.main.bootstrap_brokers_tls
      CEZBEK_KAFKA_PROPERTIES         = "security.protocol=ssl"
      CEZBEK_S3_BUCKET                = aws_s3_bucket.uploads.bucket
      CEZBEK_S3_REGION                = var.region
      CEZBEK_S3_PATH_STYLE            = "false"
      CEZBEK_SQS_QUEUE_URL            = aws_sqs_queue.uploads.url
      CEZBEK_SMTP_ADDR                = "email-smtp.${var.region}.amazonaws.com:587"
      CEZBEK_SMTP_TLS                 = "starttls"
      CEZBEK_NOTIFIER_FROM            = var.email_from
      CEZBEK_NOTIFIER_UNSUBSCRIBE_URL = "https://${var.informer_host}/v1/unsubscribe"
    }
    keda = { bootstrapServers = aws_msk_cluster.main.bootstrap_brokers_tls }
  }
}
