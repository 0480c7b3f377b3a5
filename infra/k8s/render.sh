#!/usr/bin/env bash
# Fill in the placeholders of the manifests in infra/k8s and print the result on stdout.
#
#   export BUCKET=acme-musicmap-data ACCOUNT=123456789012 REGION=us-east-1   # TAG=latest ROOT_PREFIX=mm
#   infra/k8s/render.sh serviceaccount.yaml | kubectl apply -f -
#   infra/k8s/render.sh train-pytorchjob.yaml | kubectl apply -f -
#
# Placeholders (one convention for every manifest):
#   s3://BUCKET/mm                                       -> s3://$BUCKET/$ROOT_PREFIX
#   ACCOUNT.dkr.ecr.REGION.amazonaws.com/musicmap:latest -> $ACCOUNT.dkr.ecr.$REGION.amazonaws.com/musicmap:$TAG
#   arn:aws:iam::ACCOUNT:                                -> arn:aws:iam::$ACCOUNT:
#   "REGION" (env values)                                -> "$REGION"
# Each pattern is anchored to its context, so names such as AWS_REGION are never touched
# (a bare `sed s/REGION/.../g` would turn AWS_REGION into AWS_us-east-1).
set -euo pipefail

: "${BUCKET:?set BUCKET (the data bucket, Terraform output bucket_name)}"
: "${ACCOUNT:?set ACCOUNT (the 12-digit AWS account id)}"
: "${REGION:?set REGION (e.g. us-east-1)}"
TAG=${TAG:-latest}
ROOT_PREFIX=${ROOT_PREFIX:-mm}

check() {  # name value regex: refuse values that are malformed (or would break the sed patterns)
  [[ $2 =~ $3 ]] || { echo "render.sh: $1='$2' is not valid" >&2; exit 2; }
}
check BUCKET "$BUCKET" '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'
check ACCOUNT "$ACCOUNT" '^[0-9]{12}$'
check REGION "$REGION" '^[a-z]{2}(-[a-z]+)+-[0-9]+$'
check TAG "$TAG" '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
check ROOT_PREFIX "$ROOT_PREFIX" '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$'

here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || set -- serviceaccount.yaml train-pytorchjob.yaml recommend-job.yaml

first=1
for f in "$@"; do
  [ -f "$f" ] || f="$here/$f"
  [ $first = 1 ] || echo "---"
  first=0
  sed -e "s#s3://BUCKET/mm#s3://${BUCKET}/${ROOT_PREFIX}#g" \
      -e "s#ACCOUNT\.dkr\.ecr\.REGION\.amazonaws\.com/musicmap:latest#${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/musicmap:${TAG}#g" \
      -e "s#arn:aws:iam::ACCOUNT:#arn:aws:iam::${ACCOUNT}:#g" \
      -e "s#\"REGION\"#\"${REGION}\"#g" \
      "$f"
done
