"""Harness smoke test: the suite talks to the database DATABASE_URL names, and migrations ran."""

import os

import pytest
from django.contrib.auth import get_user_model
from django.db import connection


@pytest.mark.django_db
def test_database_matches_database_url_and_answers_queries():
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres:", "postgresql:", "pgsql:")):
        assert connection.vendor == "postgresql"
    elif url == "" or url.startswith("sqlite:"):
        assert connection.vendor == "sqlite"

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)

    user_model = get_user_model()
    user_model.objects.create_user(username="smoke", password="x")
    assert user_model.objects.filter(username="smoke").count() == 1
