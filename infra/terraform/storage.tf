# The one storage root of the pipeline: s3://<bucket_name>/<root_prefix>/{mpd,graph,model,recs,metrics}/
# plus code/ (the EMR Serverless entry point and py-files) and logs/ (EMR Serverless logs) outside it.
# Private, encrypted at rest (SSE-S3), versioned, TLS-only. Credentials never appear anywhere:
# the jobs get them from their IAM roles (EMR job role, IRSA on EKS).

locals {
  bucket_arn = aws_s3_bucket.data.arn
  root_uri   = "s3://${aws_s3_bucket.data.bucket}/${var.root_prefix}"
}

resource "aws_s3_bucket" "data" {
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced" # ACLs disabled: access is IAM/bucket policy only
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket = aws_s3_bucket.data.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    # SSE-S3. For SSE-KMS with a customer key, switch to "aws:kms" + kms_master_key_id and grant
    # kms:Decrypt/GenerateDataKey on that key to the two job roles in iam.tf.
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "expire-replaced-versions"
    status = "Enabled"

    filter {}

    # Each stage rerun deletes its previous version folder; keep those objects recoverable for a while.
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    # Multipart uploads of a killed writer (Spark, s3fs) would otherwise be billed forever.
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      local.bucket_arn,
      "${local.bucket_arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket.json

  # Put the policy after the public access block so the two updates do not race.
  depends_on = [aws_s3_bucket_public_access_block.data]
}

# ---------------------------------------------------------------------------------------------
# Container registries
# ---------------------------------------------------------------------------------------------

# The project image (infra/docker/Dockerfile): GPU trainers, the recommend job, Spark on Kubernetes.
resource "aws_ecr_repository" "musicmap" {
  name                 = var.name
  image_tag_mutability = "MUTABLE" # the runbook pushes :latest; pin tags/digests for reproducible runs
  force_delete         = var.force_destroy

  image_scanning_configuration {
    scan_on_push = true
  }
}

# Optional EMR Serverless custom image (infra/docker/emr-serverless.Dockerfile).
resource "aws_ecr_repository" "emr" {
  name                 = "${var.name}-emr"
  image_tag_mutability = "MUTABLE"
  force_delete         = var.force_destroy

  image_scanning_configuration {
    scan_on_push = true
  }
}

# EMR Serverless pulls a custom image with its service principal, only for this application.
data "aws_iam_policy_document" "emr_image_pull" {
  statement {
    sid    = "EmrServerlessCustomImageRetrievalPolicy"
    effect = "Allow"
    actions = [
      "ecr:BatchGetImage",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
    ]

    principals {
      type        = "Service"
      identifiers = ["emr-serverless.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [aws_emrserverless_application.spark.arn]
    }
  }
}

resource "aws_ecr_repository_policy" "emr" {
  repository = aws_ecr_repository.emr.name
  policy     = data.aws_iam_policy_document.emr_image_pull.json
}
