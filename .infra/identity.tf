# The role the Cezbek pods assume through their service account (IRSA): the uploads bucket and
# queue, the key that encrypts them, and the application secret. EKS injects
# AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE; the services exchange the token for
# short-lived keys (CEZBEK_S3_ACCESS_KEY/SECRET_KEY stay unset).
resource "aws_iam_role" "services" {
  name               = "${var.name}-services"
  assume_role_policy = data.aws_iam_policy_document.services_trust.json
}

data "aws_iam_policy_document" "services_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${var.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "services" {
  name   = "cezbek-services"
  role   = aws_iam_role.services.id
  policy = data.aws_iam_policy_document.services.json
}

data "aws_iam_policy_document" "services" {
  statement {
    sid       = "ListUploads"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.uploads.arn]
  }

  # Read and move files (copy + delete), write reports, presign partner uploads.
  statement {
    sid       = "UseUploads"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.uploads.arn}/*"]
  }

  statement {
    sid       = "ReadUploadNotices"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.uploads.arn]
  }

  statement {
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  # For the External Secrets Operator running under this role, or for reading it directly.
  statement {
    sid       = "ReadAppSecret"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [aws_secretsmanager_secret.app.arn]
  }
}
