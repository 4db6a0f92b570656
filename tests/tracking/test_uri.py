"""xsweep.tracking.uri: a password in a tracking URI is never shown nor recorded."""

from xsweep.tracking.uri import redact, split_credentials


def test_redact_hides_only_the_password():
    assert redact("http://alice:s3cret@mlflow.example:5000/x") == "http://alice:***@mlflow.example:5000/x"
    assert redact("http://mlflow.example:5000") == "http://mlflow.example:5000"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_split_credentials_gives_the_bare_uri_and_the_pair():
    assert split_credentials("https://bob:p%40ss@host:443/api") == ("https://host:443/api", "bob", "p%40ss")
    assert split_credentials("http://host:5000") == ("http://host:5000", None, None)
