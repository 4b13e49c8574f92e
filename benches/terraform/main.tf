# The reference architecture as plain Terraform: resource for resource what
# `mbstack apply` creates for the default spec of stack "bench" (VPC 10.0.0.0/16 in
# 2 AZs, one NAT, PostgreSQL 17 on db.t4g.micro, HTTP ALB, Metabase on Fargate
# 1 vCPU / 2 GiB). No modules. Used only by the side-by-side benchmark
# (benches/run); `endpoint` points every service at the local emulator.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "endpoint" {
  type    = string
  default = "http://127.0.0.1:5000"
}

variable "stack" {
  type    = string
  default = "bench"
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    ec2                    = var.endpoint
    rds                    = var.endpoint
    elbv2                  = var.endpoint
    ecs                    = var.endpoint
    iam                    = var.endpoint
    logs                   = var.endpoint
    secretsmanager         = var.endpoint
    sts                    = var.endpoint
    applicationautoscaling = var.endpoint
  }
  default_tags {
    tags = {
      "mbstack:stack" = var.stack
    }
  }
}

locals {
  azs     = ["us-east-1a", "us-east-1b"]
  image   = "metabase/metabase:v0.58.6"
  db_user = "metabase"
}

# ---------------------------------------------------------------- network
resource "aws_vpc" "main" {
  cidr_block           = "10.0.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.stack}-vpc" }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.stack}-igw" }
}

# mbstack's fixed layout: the VPC cut into 16 blocks, public i, private 8+i.
resource "aws_subnet" "public" {
  count             = 2
  vpc_id            = aws_vpc.main.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(aws_vpc.main.cidr_block, 4, count.index)
  tags              = { Name = "${var.stack}-public-${count.index}" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.main.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(aws_vpc.main.cidr_block, 4, 8 + count.index)
  tags              = { Name = "${var.stack}-private-${count.index}" }
}

resource "aws_eip" "nat" {
  domain = "vpc"
  tags   = { Name = "${var.stack}-nat-0" }
}

resource "aws_nat_gateway" "main" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = "${var.stack}-nat-0" }
  depends_on    = [aws_internet_gateway.main]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.stack}-public" }
}

resource "aws_route" "public_default" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.main.id
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = "${var.stack}-private" }
}

resource "aws_route" "private_default" {
  route_table_id         = aws_route_table.private.id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.main.id
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_security_group" "lb" {
  name        = "${var.stack}-lb"
  description = "mbstack ${var.stack}: load balancer"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "lb_http" {
  security_group_id = aws_security_group.lb.id
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "lb_all" {
  security_group_id = aws_security_group.lb.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "app" {
  name        = "${var.stack}-app"
  description = "mbstack ${var.stack}: Metabase tasks"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "app_from_lb" {
  security_group_id            = aws_security_group.app.id
  ip_protocol                  = "tcp"
  from_port                    = 3000
  to_port                      = 3000
  referenced_security_group_id = aws_security_group.lb.id
  # Emulator quirk: moto reports the group as "<account>/sg-…", AWS as "sg-…".
  lifecycle {
    ignore_changes = [referenced_security_group_id]
  }
}

resource "aws_vpc_security_group_egress_rule" "app_all" {
  security_group_id = aws_security_group.app.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "db" {
  name        = "${var.stack}-db"
  description = "mbstack ${var.stack}: database"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_app" {
  security_group_id            = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.app.id
  # Emulator quirk: moto reports the group as "<account>/sg-…", AWS as "sg-…".
  lifecycle {
    ignore_changes = [referenced_security_group_id]
  }
}

resource "aws_vpc_security_group_egress_rule" "db_all" {
  security_group_id = aws_security_group.db.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# ---------------------------------------------------------------- data
resource "aws_db_subnet_group" "main" {
  name       = "${var.stack}-db"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_instance" "main" {
  identifier                  = "${var.stack}-db"
  engine                      = "postgres"
  engine_version              = "17"
  instance_class              = "db.t4g.micro"
  allocated_storage           = 20
  storage_type                = "gp3"
  storage_encrypted           = true
  publicly_accessible         = false
  db_name                     = "metabase"
  username                    = local.db_user
  manage_master_user_password = true
  db_subnet_group_name        = aws_db_subnet_group.main.name
  vpc_security_group_ids      = [aws_security_group.db.id]
  multi_az                    = false
  backup_retention_period     = 7
  backup_window               = "03:00-03:30"
  maintenance_window          = "sun:04:00-sun:04:30"
  auto_minor_version_upgrade  = true
  copy_tags_to_snapshot       = true
  deletion_protection         = false
  skip_final_snapshot         = false
  final_snapshot_identifier   = "${var.stack}-db-final"
}

# ---------------------------------------------------------------- load balancer
resource "aws_lb" "main" {
  name                       = "${var.stack}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.lb.id]
  idle_timeout               = 60
  drop_invalid_header_fields = true
  enable_deletion_protection = false
}

resource "aws_lb_target_group" "main" {
  name                 = "${var.stack}-tg"
  port                 = 3000
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30
  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/api/health"
    interval            = 30
    timeout             = 10
    healthy_threshold   = 2
    unhealthy_threshold = 5
    matcher             = "200"
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.main.arn
  }
}

# ---------------------------------------------------------------- app
resource "aws_cloudwatch_log_group" "main" {
  name              = "/mbstack/${var.stack}/metabase"
  retention_in_days = 30
}

data "aws_secretsmanager_random_password" "key" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "key" {
  name                    = "${var.stack}/metabase-encryption-key"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "key" {
  secret_id     = aws_secretsmanager_secret.key.id
  secret_string = data.aws_secretsmanager_random_password.key.random_password
  # Generated once, never regenerated (as mbstack's key).
  lifecycle {
    ignore_changes = [secret_string]
  }
}

data "aws_iam_policy_document" "ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.stack}-metabase-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "secrets" {
  name = "mbstack-read-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "secretsmanager:GetSecretValue"
      Resource = [aws_db_instance.main.master_user_secret[0].secret_arn, aws_secretsmanager_secret.key.arn]
    }]
  })
}

resource "aws_iam_role" "task" {
  name               = "${var.stack}-metabase-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks.json
}

resource "aws_ecs_cluster" "main" {
  name = "${var.stack}-cluster"
  setting {
    name  = "containerInsights"
    value = "disabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]
  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "main" {
  family                   = "${var.stack}-metabase"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "1024"
  memory                   = "2048"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([{
    name         = "metabase"
    image        = local.image
    essential    = true
    stopTimeout  = 120
    portMappings = [{ containerPort = 3000, protocol = "tcp" }]
    environment = [
      { name = "MB_DB_TYPE", value = "postgres" },
      { name = "MB_DB_HOST", value = aws_db_instance.main.address },
      { name = "MB_DB_PORT", value = tostring(aws_db_instance.main.port) },
      { name = "MB_DB_DBNAME", value = "metabase" },
      { name = "MB_DB_USER", value = local.db_user },
      { name = "JAVA_TIMEZONE", value = "UTC" },
      { name = "JAVA_OPTS", value = "-Xmx1536m -XX:+ExitOnOutOfMemoryError" },
    ]
    secrets = [
      { name = "MB_DB_PASS", valueFrom = "${aws_db_instance.main.master_user_secret[0].secret_arn}:password::" },
      { name = "MB_ENCRYPTION_SECRET_KEY", valueFrom = aws_secretsmanager_secret.key.arn },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.main.name
        "awslogs-region"        = "us-east-1"
        "awslogs-stream-prefix" = "metabase"
      }
    }
  }])
}

resource "aws_ecs_service" "main" {
  name                               = "metabase"
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.main.arn
  desired_count                      = 1
  health_check_grace_period_seconds  = 1800
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true
  enable_execute_command             = false
  # Like mbstack, the run ends when the service is steady (tasks healthy).
  wait_for_steady_state = true
  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.app.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.main.arn
    container_name   = "metabase"
    container_port   = 3000
  }
  depends_on = [aws_lb_listener.http, aws_ecs_cluster_capacity_providers.main, aws_iam_role_policy.secrets]
  # Emulator quirk: moto does not report this field, AWS does.
  lifecycle {
    ignore_changes = [availability_zone_rebalancing]
  }
}

output "url" {
  value = "http://${aws_lb.main.dns_name}"
}
