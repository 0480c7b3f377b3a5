# Music Map on AWS: storage (S3), Spark (EMR Serverless), GPU training (EKS), IAM.
# Only the hashicorp/aws provider is used: no registry modules, no other providers.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 6.0"
    }
  }

  # State: local by default. For a team, add a backend (e.g. an S3 backend with use_lockfile)
  # in a backend.tf that stays out of git, or pass -backend-config at `terraform init`.
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "musicmap", ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
