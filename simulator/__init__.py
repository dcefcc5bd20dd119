"""The synthetic banking world: customers, merchants, normal behaviour and fraud scenarios.

Not product code: the pipelines' `generate` step and the producer use it to make history and
live traffic; the scoring path never imports it.
"""
