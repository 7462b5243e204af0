"""The live dashboard: a page and its built assets, served by the API process, plus a push feed.

The page reads figures from the query API of the other services and listens to ``/v1/stream``
for new score rows and alerts, so the API process is the only thing to run.
"""
