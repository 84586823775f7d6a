"""The benchmark: steering variants compared concept by concept, with the paper's metrics."""
