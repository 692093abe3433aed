variable "region" {
  description = "AWS region for everything Cezbek runs on."
  type        = string
  default     = "ap-southeast-3"
}

variable "name" {
  description = "Prefix of every resource name; one environment per name (cezbek-prod, cezbek-staging)."
  type        = string
  default     = "cezbek"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "The VPC's address range; split into one public and one private subnet per zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "zone_count" {
  description = "Availability zones to spread over (MSK needs as many brokers as zones)."
  type        = number
  default     = 3

  validation {
    condition     = var.zone_count >= 2 && var.zone_count <= 3
    error_message = "zone_count must be 2 or 3."
  }
}

variable "eks_version" {
  description = "Kubernetes version of the EKS control plane."
  type        = string
  default     = "1.31"
}

variable "eks_public_access_cidrs" {
  description = "CIDRs that may reach the Kubernetes API from outside the VPC; empty keeps the endpoint private."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the general node group (the five services, etcd, KEDA)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_count" {
  description = "Desired, minimum and maximum size of the general node group."
  type        = object({ desired = number, min = number, max = number })
  default     = { desired = 3, min = 3, max = 9 }
}

variable "scylla_node_count" {
  description = "Nodes of the dedicated ScyllaDB node group (Scylla Operator on EKS). 0 when the ledger is on ScyllaDB Cloud; see README.md."
  type        = number
  default     = 3
}

variable "scylla_instance_type" {
  description = "Instance type for Scylla nodes: local NVMe, as Scylla recommends."
  type        = string
  default     = "i4i.xlarge"
}

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster."
  type        = string
  default     = "3.7.x"
}

variable "kafka_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "kafka_volume_gib" {
  description = "EBS storage per broker, GiB."
  type        = number
  default     = 500
}

variable "postgres_version" {
  description = "RDS PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "postgres_instance_class" {
  description = "RDS instance class for campaignex, ingest jobs and (single-node setups) the ledger."
  type        = string
  default     = "db.m6g.large"
}

variable "postgres_storage_gib" {
  description = "Initial RDS storage, GiB (autoscales to four times this)."
  type        = number
  default     = 100
}

variable "ses_domain" {
  description = "Domain the nightly digests are sent from; its DKIM records are an output to add to DNS."
  type        = string
}

variable "email_from" {
  description = "From address of the digests; must be in ses_domain."
  type        = string
}

variable "informer_host" {
  description = "Public host name of the informer (the chart's ingress host): digests link to https://HOST/v1/unsubscribe."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", var.informer_host))
    error_message = "informer_host is a bare host name such as rewards.example.com (no scheme, no path)."
  }
}

variable "console_host" {
  description = "Public host name of the console (the chart's console ingress host): browsers PUT uploads from https://HOST straight to the bucket, which allows that origin by CORS."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", var.console_host))
    error_message = "console_host is a bare host name such as console.example.com (no scheme, no path)."
  }
}

variable "kubernetes_namespace" {
  description = "Namespace the Helm chart is installed in."
  type        = string
  default     = "cezbek"
}

variable "service_account" {
  description = "Service account name of the Helm release (the chart's serviceAccount.name)."
  type        = string
  default     = "cezbek"
}

variable "upload_retention_days" {
  description = "Days processed CSV files and their reports are kept in the bucket."
  type        = number
  default     = 90
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps flow, cluster and broker logs."
  type        = number
  default     = 365
}
