#!/usr/bin/env bash
# build_graph with Spark on Kubernetes (the EKS cluster of infra/terraform): spark-submit in
# cluster mode; driver and executors run the project image (infra/docker/Dockerfile, which adds
# S3A and the Spark entrypoint) as service account musicmap-spark, whose IRSA role
# (musicmap-spark-job) reads mpd/ and writes graph/. Pods go to the CPU node group.
#
#   export BUCKET=acme-musicmap-data ACCOUNT=123456789012 REGION=us-east-1
#   infra/k8s/render.sh serviceaccount.yaml | kubectl apply -f -      # once
#   infra/k8s/spark-submit.sh [--set graph.min_playlists=5 ...]       # extra args go to build_graph.py
#
# Needs: kubectl pointed at the cluster (aws eks update-kubeconfig ...), and a spark-submit of the
# image's Spark version (the project venv has one: SPARK_SUBMIT=.venv/bin/spark-submit).
# Sizing: EXECUTORS x EXECUTOR_CORES / EXECUTOR_MEMORY must fit the CPU nodes
# (terraform apply -var system_node_count=N to add nodes for the full MPD).
set -euo pipefail

: "${BUCKET:?set BUCKET (Terraform output bucket_name)}"
: "${ACCOUNT:?set ACCOUNT (AWS account id)}"
: "${REGION:?set REGION}"
ROOT_PREFIX=${ROOT_PREFIX:-mm}
IMAGE=${IMAGE:-${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/musicmap:${TAG:-latest}}
NAMESPACE=${NAMESPACE:-musicmap}
SPARK_SUBMIT=${SPARK_SUBMIT:-spark-submit}
EXECUTORS=${EXECUTORS:-4}
EXECUTOR_CORES=${EXECUTOR_CORES:-3}
EXECUTOR_MEMORY=${EXECUTOR_MEMORY:-8g}
DRIVER_MEMORY=${DRIVER_MEMORY:-4g}
# API server of the current kubectl context (or: terraform output -raw eks_cluster_endpoint).
K8S_API=${K8S_API:-$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')}

exec "$SPARK_SUBMIT" \
  --master "k8s://${K8S_API}" \
  --deploy-mode cluster \
  --name musicmap-build-graph \
  --conf spark.kubernetes.namespace="${NAMESPACE}" \
  --conf spark.kubernetes.container.image="${IMAGE}" \
  --conf spark.kubernetes.container.image.pullPolicy=Always \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=musicmap-spark \
  --conf spark.kubernetes.authenticate.executor.serviceAccountName=musicmap-spark \
  --conf spark.kubernetes.node.selector.musicmap/pool=system \
  --conf spark.driver.cores=1 \
  --conf spark.driver.memory="${DRIVER_MEMORY}" \
  --conf spark.executor.instances="${EXECUTORS}" \
  --conf spark.executor.cores="${EXECUTOR_CORES}" \
  --conf spark.executor.memory="${EXECUTOR_MEMORY}" \
  --conf spark.kubernetes.driverEnv.PYSPARK_PYTHON=python3 \
  --conf spark.executorEnv.PYSPARK_PYTHON=python3 \
  --conf spark.kubernetes.driverEnv.AWS_REGION="${REGION}" \
  --conf spark.executorEnv.AWS_REGION="${REGION}" \
  --conf spark.hadoop.fs.s3.impl=org.apache.hadoop.fs.s3a.S3AFileSystem \
  --conf spark.hadoop.fs.s3a.endpoint.region="${REGION}" \
  --conf spark.hadoop.fs.s3a.aws.credentials.provider=software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider \
  local:///app/spark_jobs/build_graph.py \
  --config /app/conf/cluster.example.yaml \
  --root "s3://${BUCKET}/${ROOT_PREFIX}" \
  "$@"
