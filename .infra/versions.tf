terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
  }

  # State holds generated passwords: keep it in an encrypted, versioned bucket. The bucket,
  # key and lock table are given at `terraform init -backend-config=…` (see README.md), so no
  # account details live in these files.
  backend "s3" {}
}
