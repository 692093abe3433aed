# Cezbek on AWS: network, EKS (the five services, etcd, Scylla), MSK (the event log), S3 + SQS
# (CSV drops and their notifications), RDS PostgreSQL (campaignex, ingest jobs), SES (digests),
# one IAM role the pods assume (IRSA) and the application secret in Secrets Manager.
# See README.md for the order of operations and what is installed into the cluster afterwards.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ application = "cezbek", environment = var.name, managed-by = "terraform" }, var.tags)
  }
}

data "aws_availability_zones" "available" {
  state = "available"
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  zones      = slice(data.aws_availability_zones.available.names, 0, var.zone_count)
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # Two /20s per zone: public (load balancers, NAT) and private (nodes, brokers, databases).
  public_subnets  = [for index, zone in local.zones : cidrsubnet(var.vpc_cidr, 4, index)]
  private_subnets = [for index, zone in local.zones : cidrsubnet(var.vpc_cidr, 4, index + 8)]
  bucket_name     = "${var.name}-uploads-${local.account_id}"
  oidc_issuer     = trimprefix(aws_eks_cluster.main.identity[0].oidc[0].issuer, "https://")
}

# One customer-managed key for everything at rest (cluster secrets, brokers, database, bucket,
# queue, logs, the application secret), rotated yearly.
resource "aws_kms_key" "main" {
  description             = "${var.name}: encryption at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:a key policy's resource is always the key itself ("*" means this key)
  #checkov:skip=CKV_AWS_111:same: "*" in a key policy is this key only
  #checkov:skip=CKV_AWS_356:same: "*" in a key policy is this key only
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts flow, cluster and broker logs with the key.
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"]
    }
  }

  # S3 publishes object-created events to the encrypted queue.
  statement {
    sid       = "S3Notifications"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
