# The nightly digests go out through SES's SMTP interface (the notifier speaks SMTP via lettre).
resource "aws_sesv2_email_identity" "digests" {
  email_identity         = var.ses_domain
  configuration_set_name = aws_sesv2_configuration_set.digests.configuration_set_name
}

resource "aws_sesv2_configuration_set" "digests" {
  configuration_set_name = var.name

  delivery_options {
    tls_policy = "REQUIRE"
  }

  reputation_options {
    reputation_metrics_enabled = true
  }

  suppression_options {
    suppressed_reasons = ["BOUNCE", "COMPLAINT"]
  }
}

# SES SMTP credentials are derived from an IAM access key; the key's user may only send mail
# from the digest address. Its SMTP password goes straight into Secrets Manager.
resource "aws_iam_user" "smtp" {
  #checkov:skip=CKV_AWS_273:SES SMTP passwords can only be derived from an IAM user's access key; the user is not a person
  name = "${var.name}-smtp"
}

resource "aws_iam_group" "smtp" {
  name = "${var.name}-smtp"
}

resource "aws_iam_user_group_membership" "smtp" {
  user   = aws_iam_user.smtp.name
  groups = [aws_iam_group.smtp.name]
}

resource "aws_iam_group_policy" "smtp" {
  name   = "send-digests"
  group  = aws_iam_group.smtp.name
  policy = data.aws_iam_policy_document.smtp.json
}

data "aws_iam_policy_document" "smtp" {
  statement {
    actions   = ["ses:SendRawEmail"]
    resources = [aws_sesv2_email_identity.digests.arn]
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.email_from]
    }
  }
}

resource "aws_iam_access_key" "smtp" {
  user = aws_iam_user.smtp.name
}
