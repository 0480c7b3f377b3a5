# syntax=docker/dockerfile:1
#
# Optional custom image for the EMR Serverless application (build_graph on EMR Serverless).
# EMR Serverless images must derive from the release's base image: Spark (4.x for emr-spark-8.*)
# comes from it, NOT from pip. This adds Python 3.11 and the Python packages the job imports on
# the driver and executors; the project code itself ships per run with
# --py-files s3://BUCKET/code/musicmap-dist.zip (`make dist`).
#
#   docker build --platform linux/amd64 -f infra/docker/emr-serverless.Dockerfile \
#     --build-arg EMR_RELEASE=emr-spark-8.0.0 -t musicmap-emr:latest .
#
# Then push it to the musicmap-emr ECR repository (Terraform output ecr_emr_repository_url) and
# `terraform apply -var emr_image_uri=<uri>:latest`. Keep EMR_RELEASE equal to the application's
# release label (var.emr_release_label).

ARG EMR_RELEASE=emr-spark-8.0.0
FROM public.ecr.aws/emr-serverless/spark/${EMR_RELEASE}:latest

USER root
RUN dnf install -y python3.11 python3.11-pip \
 && dnf clean all \
 && python3.11 -m pip install --no-cache-dir \
      "pyarrow>=15" "pandas>=2.2,<3" "numpy>=1.26" "fsspec>=2024.2" "s3fs>=2024.2" "pyyaml>=6" "tqdm>=4.66"

# Driver and executors use this interpreter (also pass it in sparkSubmitParameters, see README).
ENV PYSPARK_PYTHON=/usr/bin/python3.11

# EMR Serverless runs jobs as the hadoop user.
USER hadoop:hadoop
