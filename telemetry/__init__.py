"""What operators watch: Prometheus metrics and Flower task events. Never fails the work it observes."""
