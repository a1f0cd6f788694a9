"""The Amazon ECR JSON 1.1 protocol."""
