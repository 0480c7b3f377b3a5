# EMR Serverless application running spark_jobs/build_graph.py (mpd/ -> graph/).
# Jobs are submitted with `aws emr-serverless start-job-run` (see infra/README.md) and run with
# the Spark job role from iam.tf. No VPC configuration: the jobs only need S3 in this region.
#
# Spark version: the project targets Spark 4 (pyspark>=4.0). emr-7.x labels ship Spark 3.5; the
# emr-spark-8.x labels ship Spark 4.0+. See var.emr_release_label.

resource "aws_emrserverless_application" "spark" {
  name          = "${var.name}-build-graph"
  release_label = var.emr_release_label
  type          = "SPARK"
  architecture  = "X86_64"

  # Cost guard: the application never holds more than this at once, whatever a job asks for.
  maximum_capacity {
    cpu    = "${var.emr_max_vcpu} vCPU"
    memory = "${var.emr_max_memory_gb} GB"
  }

  auto_start_configuration {
    enabled = true
  }

  auto_stop_configuration {
    enabled              = true
    idle_timeout_minutes = var.emr_idle_timeout_minutes
  }

  # A custom image carries Python 3.11 and the jobs' dependencies (pyarrow, fsspec, s3fs, pyyaml,
  # numpy) for driver and executors. Push it first, then set emr_image_uri and apply again.
  dynamic "image_configuration" {
    for_each = var.emr_image_uri == null ? [] : [var.emr_image_uri]
    content {
      image_uri = image_configuration.value
    }
  }
}
