# ---------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name prefix of every resource (cluster, roles, application, repositories). The Kubernetes manifests in infra/k8s assume the default 'musicmap' (role names musicmap-trainer / musicmap-spark-job)."
  type        = string
  default     = "musicmap"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: 2-31 characters, lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Storage: one bucket, one root prefix holding the stage folders mpd/ graph/ model/ recs/ metrics/
# ---------------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket (globally unique), e.g. 'acme-musicmap-data'."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, dots, dashes)."
  }
}

variable "root_prefix" {
  description = "Key prefix of the storage root inside the bucket: the jobs run with --root s3://<bucket>/<root_prefix>."
  type        = string
  default     = "mm"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.root_prefix))
    error_message = "root_prefix: a key prefix without leading or trailing slash, e.g. 'mm' or 'projects/mm'."
  }
}

variable "code_prefix" {
  description = "Key prefix (outside the root) where `make dist` output is uploaded for EMR Serverless (build_graph.py, musicmap-dist.zip)."
  type        = string
  default     = "code"
}

variable "logs_prefix" {
  description = "Key prefix (outside the root) where EMR Serverless writes driver/executor logs."
  type        = string
  default     = "logs"
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced object version is kept (versioning is on; each rerun of a stage replaces its output)."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a non-empty bucket and ECR repositories with images. Keep false for real data."
  type        = bool
  default     = false
}

variable "trainer_extra_read_keys" {
  description = "Object keys under the root, outside graph/, that the training/recommend role may read. The default lets `musicmap recommend --challenge` read the challenge set from mpd/."
  type        = list(string)
  default     = ["mpd/challenge_set.json"]
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR of the VPC created for EKS (two public and two private subnets are cut from it)."
  type        = string
  default     = "10.42.0.0/16"
}

# ---------------------------------------------------------------------------------------------
# EMR Serverless (Spark: build_graph)
# ---------------------------------------------------------------------------------------------

variable "emr_release_label" {
  description = "EMR Serverless release label. The project needs Spark 4: use an 'emr-spark-8.x' label (AWS runtime for Apache Spark 4.0+). The emr-7.x labels ship Spark 3.5 and do NOT fit. List what your region offers with `aws emr-serverless list-release-labels` and pick the newest Spark-4 label."
  type        = string
  default     = "emr-spark-8.0.0"
}

variable "emr_image_uri" {
  description = "Optional custom image for EMR Serverless (infra/docker/emr-serverless.Dockerfile: the release's base image plus Python 3.11 and the jobs' Python dependencies), e.g. '<account>.dkr.ecr.<region>.amazonaws.com/musicmap-emr:latest'. null = the release's stock image (then ship dependencies with --archives, see infra/README.md)."
  type        = string
  default     = null
}

variable "emr_max_vcpu" {
  description = "Upper bound on the vCPUs all EMR Serverless workers of the application may use at once (a cost guard)."
  type        = number
  default     = 256
}

variable "emr_max_memory_gb" {
  description = "Upper bound on the memory (GB) all EMR Serverless workers of the application may use at once."
  type        = number
  default     = 1024
}

variable "emr_idle_timeout_minutes" {
  description = "Minutes without jobs after which the EMR Serverless application stops (and stops billing pre-initialized capacity)."
  type        = number
  default     = 15
}

# ---------------------------------------------------------------------------------------------
# EKS (GPU training, batch recommend, optional Spark on Kubernetes)
# ---------------------------------------------------------------------------------------------

variable "eks_version" {
  description = "Kubernetes version of the EKS cluster. Check `aws eks describe-cluster-versions` for versions in standard support."
  type        = string
  default     = "1.34"
}

variable "eks_public_access_cidrs" {
  description = "CIDRs allowed to reach the public EKS API endpoint (narrow this to your office/VPN)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "k8s_namespace" {
  description = "Kubernetes namespace of the jobs (infra/k8s manifests use 'musicmap')."
  type        = string
  default     = "musicmap"
}

variable "trainer_service_account" {
  description = "Kubernetes service account of the training and recommend pods; IRSA binds it to the trainer role."
  type        = string
  default     = "musicmap-trainer"
}

variable "spark_service_account" {
  description = "Kubernetes service account of Spark driver/executor pods (Spark on Kubernetes); IRSA binds it to the Spark job role."
  type        = string
  default     = "musicmap-spark"
}

variable "system_instance_types" {
  description = "Instance types of the CPU node group (cluster add-ons, Spark on Kubernetes driver/executors)."
  type        = list(string)
  default     = ["m6i.2xlarge"]
}

variable "system_node_count" {
  description = "Desired (and minimum) number of CPU nodes."
  type        = number
  default     = 2
}

variable "system_node_max" {
  description = "Maximum number of CPU nodes (raise desired count up to this for Spark on Kubernetes)."
  type        = number
  default     = 6
}

variable "gpu_instance_type" {
  description = "Instance type of the GPU node group. g5.12xlarge = 4 x NVIDIA A10G (24 GB each); the full MPD model (dim 64) fits one such GPU. For 8 GPUs per node use e.g. g6e.48xlarge or p4d.24xlarge (and set gpus_per_node = 8)."
  type        = string
  default     = "g5.12xlarge"
}

variable "gpus_per_node" {
  description = "GPUs of one gpu_instance_type node. Must match the instance type; it is the torchrun --nproc_per_node and the nvidia.com/gpu limit in infra/k8s/train-pytorchjob.yaml."
  type        = number
  default     = 4
}

variable "gpu_node_count" {
  description = "Desired number of GPU nodes (torchrun --nnodes). Set 0 between runs to stop paying for idle GPUs."
  type        = number
  default     = 2

  validation {
    condition     = var.gpu_node_count >= 0
    error_message = "gpu_node_count must be >= 0."
  }
}

variable "gpu_node_max" {
  description = "Maximum number of GPU nodes in the node group."
  type        = number
  default     = 4
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND or SPOT for the GPU nodes (training resumes from checkpoints, so SPOT is workable)."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_capacity_type)
    error_message = "gpu_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "gpu_node_disk_gb" {
  description = "Root volume size (GB) of GPU nodes: the CUDA torch image is large."
  type        = number
  default     = 200
}
