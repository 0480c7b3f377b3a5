# Job roles, least privilege per stage of the storage contract (root = s3://<bucket>/<root_prefix>):
#
#   role                          reads                               writes
#   spark job (build_graph)       mpd/*, code/*                       graph/*, logs/<emr>/*
#   trainer (train, recommend,    graph/*, trainer_extra_read_keys     model/*, recs/*, metrics/*
#            evaluate)
#
# "writes" includes read and delete: a stage writes a version folder, commits it with _SUCCESS
# and deletes stale versions (musicmap/storage.py). Nothing else in the bucket is reachable.

locals {
  root_arn = "${local.bucket_arn}/${var.root_prefix}"
  emr_logs = "${var.logs_prefix}/emr-serverless"

  # Object actions of a stage that owns a prefix (multipart: Spark and s3fs upload big files in parts).
  rw_object_actions = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
  ]

  # The root key itself (and with a trailing slash): Hadoop S3A probes the parents of a path it
  # creates with HEAD requests; allowing them on these two keys reveals nothing.
  root_marker_keys = [local.root_arn, "${local.root_arn}/"]

  spark_read_prefixes  = ["${var.root_prefix}/mpd", var.code_prefix]
  spark_write_prefixes = ["${var.root_prefix}/graph"]

  trainer_read_prefixes  = ["${var.root_prefix}/graph"]
  trainer_write_prefixes = [for s in ["model", "recs", "metrics"] : "${var.root_prefix}/${s}"]
  trainer_read_keys      = [for k in var.trainer_extra_read_keys : "${var.root_prefix}/${k}"]
}

# ---------------------------------------------------------------------------------------------
# Spark job role: EMR Serverless job runtime role, and IRSA for Spark on Kubernetes pods
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "spark_assume" {
  statement {
    sid     = "EmrServerlessJobRuns"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["emr-serverless.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:emr-serverless:${var.region}:${data.aws_caller_identity.current.account_id}:/applications/*"]
    }
  }

  statement {
    sid     = "SparkOnKubernetesPods"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${var.spark_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "spark" {
  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = flatten([
        for p in concat(local.spark_read_prefixes, local.spark_write_prefixes, [local.emr_logs]) : [p, "${p}/*"]
      ])
    }
  }

  statement {
    sid       = "BucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [local.bucket_arn]
  }

  statement {
    sid     = "ReadInputAndCode"
    actions = ["s3:GetObject"]
    resources = concat(
      [for p in local.spark_read_prefixes : "${local.bucket_arn}/${p}/*"],
      local.root_marker_keys,
    )
  }

  statement {
    sid       = "WriteGraph"
    actions   = local.rw_object_actions
    resources = [for p in local.spark_write_prefixes : "${local.bucket_arn}/${p}/*"]
  }

  statement {
    sid       = "WriteEmrLogs"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.bucket_arn}/${local.emr_logs}/*"]
  }
}

resource "aws_iam_role" "spark_job" {
  name               = "${var.name}-spark-job"
  description        = "build_graph: reads mpd/ and code/, writes graph/ under ${local.root_uri}"
  assume_role_policy = data.aws_iam_policy_document.spark_assume.json
}

resource "aws_iam_role_policy" "spark_job" {
  name   = "musicmap-s3"
  role   = aws_iam_role.spark_job.id
  policy = data.aws_iam_policy_document.spark.json
}

# ---------------------------------------------------------------------------------------------
# Trainer role (IRSA): torchrun training, batch recommend and evaluate pods
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "trainer_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:${var.trainer_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "trainer" {
  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = concat(
        flatten([for p in concat(local.trainer_read_prefixes, local.trainer_write_prefixes) : [p, "${p}/*"]]),
        local.trainer_read_keys,
      )
    }
  }

  statement {
    sid       = "BucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [local.bucket_arn]
  }

  statement {
    sid     = "ReadGraph"
    actions = ["s3:GetObject"]
    resources = concat(
      [for p in local.trainer_read_prefixes : "${local.bucket_arn}/${p}/*"],
      [for k in local.trainer_read_keys : "${local.bucket_arn}/${k}"],
      local.root_marker_keys,
    )
  }

  statement {
    sid       = "WriteModelRecsMetrics"
    actions   = local.rw_object_actions
    resources = [for p in local.trainer_write_prefixes : "${local.bucket_arn}/${p}/*"]
  }
}

resource "aws_iam_role" "trainer" {
  name               = "${var.name}-trainer"
  description        = "train/recommend/evaluate: reads graph/, writes model/ recs/ metrics/ under ${local.root_uri}"
  assume_role_policy = data.aws_iam_policy_document.trainer_assume.json
}

resource "aws_iam_role_policy" "trainer" {
  name   = "musicmap-s3"
  role   = aws_iam_role.trainer.id
  policy = data.aws_iam_policy_document.trainer.json
}
