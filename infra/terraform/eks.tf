# EKS cluster for the GPU jobs (PyTorchJob training, batch recommend) and, optionally, Spark on
# Kubernetes. Two managed node groups: a small CPU "system" group (add-ons, Spark) and a GPU group
# on the AL2023 NVIDIA AMI (driver and container toolkit preinstalled; the NVIDIA device plugin and
# the Kubeflow training operator are installed with kubectl, see infra/README.md).
# The OIDC provider enables IRSA: pods assume IAM roles through their service account.

# ---------------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "eks_cluster_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "eks_cluster" {
  name               = "${var.name}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.eks_cluster_assume.json
}

resource "aws_iam_role_policy_attachment" "eks_cluster" {
  role       = aws_iam_role.eks_cluster.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.eks_version
  role_arn = aws_iam_role.eks_cluster.arn

  # Access entries (no aws-auth ConfigMap); whoever runs `terraform apply` becomes cluster admin.
  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = true
  }

  vpc_config {
    subnet_ids              = concat(aws_subnet.private[*].id, aws_subnet.public[*].id)
    endpoint_private_access = true
    endpoint_public_access  = true
    public_access_cidrs     = var.eks_public_access_cidrs
  }

  depends_on = [aws_iam_role_policy_attachment.eks_cluster]
}

# IRSA: the cluster's OIDC issuer as an IAM identity provider. AWS validates EKS issuers through
# its own trusted CAs, so no certificate thumbprint (and no tls provider) is needed.
resource "aws_iam_openid_connect_provider" "eks" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
}

locals {
  # "oidc.eks.<region>.amazonaws.com/id/<ID>": the prefix of the :sub and :aud condition keys.
  oidc_issuer = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

# ---------------------------------------------------------------------------------------------
# Worker nodes
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# The node role only runs the kubelet, the VPC CNI and pulls images; it has NO access to the data
# bucket (pods get S3 access through IRSA, never through the instance role).
resource "aws_iam_role" "node" {
  name               = "${var.name}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

resource "aws_eks_node_group" "system" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "system"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id

  ami_type       = "AL2023_x86_64_STANDARD"
  instance_types = var.system_instance_types
  capacity_type  = "ON_DEMAND"
  disk_size      = 100

  scaling_config {
    min_size     = 1
    desired_size = var.system_node_count
    max_size     = max(var.system_node_max, var.system_node_count)
  }

  labels = {
    "musicmap/pool" = "system"
  }

  update_config {
    max_unavailable = 1
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

resource "aws_eks_node_group" "gpu" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "gpu"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = aws_subnet.private[*].id

  # Amazon Linux 2023 accelerated AMI: NVIDIA driver + container toolkit.
  ami_type       = "AL2023_x86_64_NVIDIA"
  instance_types = [var.gpu_instance_type]
  capacity_type  = var.gpu_capacity_type
  disk_size      = var.gpu_node_disk_gb

  scaling_config {
    min_size     = 0
    desired_size = var.gpu_node_count
    max_size     = max(var.gpu_node_max, var.gpu_node_count, 1)
  }

  labels = {
    "musicmap/pool"          = "gpu"
    "musicmap/gpus-per-node" = tostring(var.gpus_per_node)
  }

  # Only pods that tolerate this taint (the GPU jobs, the NVIDIA device plugin) land here.
  taint {
    key    = "nvidia.com/gpu"
    value  = "true"
    effect = "NO_SCHEDULE"
  }

  update_config {
    max_unavailable = 1
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# Warn at plan time when gpus_per_node does not match the instance type (it drives
# --nproc_per_node and the nvidia.com/gpu limits in infra/k8s).
check "gpus_per_node_matches_instance_type" {
  data "aws_ec2_instance_type" "gpu" {
    instance_type = var.gpu_instance_type
  }

  assert {
    condition     = try(sum(data.aws_ec2_instance_type.gpu.gpus[*].count), 0) == var.gpus_per_node
    error_message = "gpus_per_node = ${var.gpus_per_node} does not match the GPU count of ${var.gpu_instance_type}."
  }
}
