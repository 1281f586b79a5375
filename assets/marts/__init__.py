"""Marts: elder portraits (老年人服务画像) and KPI indicators (评价指标), keyed by pseudonyms.

Entry points for the Dagster assets: :func:`assets.marts.portraits.build_portraits`
and :func:`assets.marts.kpis.build_kpis` (call portraits first: the KPI
``portrait_completeness`` reads ``marts.elder_portrait``).
"""
