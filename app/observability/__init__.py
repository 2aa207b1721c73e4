"""What an operator watches: Prometheus metrics (/metrics) and structured logs with job and tenant ids."""
