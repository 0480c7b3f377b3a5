output "region" {
  description = "AWS region."
  value       = var.region
}

output "bucket_name" {
  description = "The data bucket."
  value       = aws_s3_bucket.data.bucket
}

output "root_uri" {
  description = "Storage root of every stage: pass as --root to build_graph, train, recommend, evaluate."
  value       = local.root_uri
}

output "code_uri" {
  description = "Where `make dist` output goes for EMR Serverless (build_graph.py, musicmap-dist.zip)."
  value       = "s3://${aws_s3_bucket.data.bucket}/${var.code_prefix}/"
}

output "emr_log_uri" {
  description = "logUri for EMR Serverless job runs (monitoringConfiguration)."
  value       = "s3://${aws_s3_bucket.data.bucket}/${local.emr_logs}/"
}

output "emr_application_id" {
  description = "EMR Serverless application id (aws emr-serverless start-job-run --application-id)."
  value       = aws_emrserverless_application.spark.id
}

output "emr_release_label" {
  description = "Release label of the EMR Serverless application."
  value       = aws_emrserverless_application.spark.release_label
}

output "spark_job_role_arn" {
  description = "Execution role of build_graph (EMR Serverless --execution-role-arn; IRSA role of the Spark service account)."
  value       = aws_iam_role.spark_job.arn
}

output "trainer_role_arn" {
  description = "IRSA role of the training/recommend service account (eks.amazonaws.com/role-arn annotation)."
  value       = aws_iam_role.trainer.arn
}

output "eks_cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name)."
  value       = aws_eks_cluster.this.name
}

output "eks_cluster_endpoint" {
  description = "EKS API server endpoint (spark-submit --master k8s://<endpoint>)."
  value       = aws_eks_cluster.this.endpoint
}

output "eks_oidc_provider_arn" {
  description = "IAM OIDC provider of the cluster (IRSA)."
  value       = aws_iam_openid_connect_provider.eks.arn
}

output "ecr_repository_url" {
  description = "Repository of the project image (infra/docker/Dockerfile)."
  value       = aws_ecr_repository.musicmap.repository_url
}

output "ecr_emr_repository_url" {
  description = "Repository of the optional EMR Serverless custom image (infra/docker/emr-serverless.Dockerfile)."
  value       = aws_ecr_repository.emr.repository_url
}

output "gpus_per_node" {
  description = "torchrun --nproc_per_node and the nvidia.com/gpu limit per training pod."
  value       = var.gpus_per_node
}

output "gpu_node_count" {
  description = "torchrun --nnodes (PyTorchJob Master + Worker replicas)."
  value       = var.gpu_node_count
}

output "update_kubeconfig_command" {
  description = "Point kubectl at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${aws_eks_cluster.this.name}"
}
