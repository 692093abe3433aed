# The application secret: the keys become the pods' environment through the chart's
# existingSecret (synced into Kubernetes by the External Secrets Operator; see README.md).
# Values are generated here and never written to a file in this repository.
resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:these values are generated together; rotate with `terraform apply -replace` and a rolling restart (README.md)
  name                    = "${var.name}/app"
  description             = "Cezbek service environment (CEZBEK_POSTGRES_URL, admin tokens, SMTP, signing keys)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id = aws_secretsmanager_secret.app.id
  secret_string = jsonencode({
    CEZBEK_POSTGRES_URL = "postgres://cezbek:${random_password.postgres.result}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/cezbek?sslmode=require"
    # Services keep only the SHA-256 of an admin token; the token itself is the next secret.
    CEZBEK_ADMIN_TOKENS       = "operator:admin:${sha256(random_password.admin_token.result)}"
    CEZBEK_SMTP_USERNAME      = aws_iam_access_key.smtp.id
    CEZBEK_SMTP_PASSWORD      = aws_iam_access_key.smtp.ses_smtp_password_v4
    CEZBEK_UNSUBSCRIBE_SECRET = random_password.unsubscribe.result
    # Every informer replica must verify the history cursors the others issued.
    CEZBEK_INFORMER_CURSOR_SECRET = random_password.cursor.result
  })
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

# Signs the unsubscribe links in digests (the notifier signs, the informer verifies).
resource "random_password" "unsubscribe" {
  length  = 48
  special = false
}

resource "random_password" "cursor" {
  length  = 48
  special = false
}

# The operator's admin token, for campaignex and the informer.
resource "aws_secretsmanager_secret" "admin_token" {
  #checkov:skip=CKV2_AWS_57:rotated by replacing it (README.md); services only hold its hash
  name                    = "${var.name}/admin-token"
  description             = "Cezbek operator admin token (bearer)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  secret_id     = aws_secretsmanager_secret.admin_token.id
  secret_string = random_password.admin_token.result
}
