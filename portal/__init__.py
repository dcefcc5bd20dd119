"""The analyst portal: a small FastAPI web app over PostgreSQL and the MLflow registry.

Pages: alert queue (live), alert detail + review, dashboard, models. Start it with
``make portal`` (or ``python -m portal serve``); add users with
``python -m portal add-user NAME --role analyst|viewer``.
"""
