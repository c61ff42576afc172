"""Grading one free-text question across all teams, as a Jupyter server extension.

Served at /coursekit/questions by any Jupyter server started in the course
folder (JupyterLab included) once the extension is enabled; the package
installs the config file that enables it, and `coursekit ta-grade` starts a
server with it.
"""


def _jupyter_server_extension_points():
    return [{"module": "coursekit.ta_grading"}]


def _load_jupyter_server_extension(server_app) -> None:
    from coursekit.ta_grading.handlers import URL_PREFIX, register_handlers

    register_handlers(server_app)
    server_app.log.info("coursekit: question-by-question grading at %s", URL_PREFIX)
    keep_login_for_the_whole_server(server_app)
    try:
        from coursekit.ta_grading.formgrader import formgrader_handlers_for
    except ImportError:  # nbgrader without its formgrader: the question page still works
        return
    web_app = server_app.web_app
    web_app.add_handlers(".*$", formgrader_handlers_for(web_app.settings["base_url"]))


def keep_login_for_the_whole_server(server_app) -> None:
    """The login cookie a `?token=` URL sets is valid for the whole server, whichever page set it.

    jupyter-server scopes it to the handler's base_url, which nbgrader's
    formgrader handlers strip to "": a formgrader page opened first with
    `?token=` got a cookie for its own folder only, and the page's data
    requests (/formgrader/api/...) were redirected to the login page.
    """
    identity = getattr(server_app, "identity_provider", None)
    if identity is not None and "path" not in identity.cookie_options:
        identity.cookie_options = {**identity.cookie_options, "path": server_app.web_app.settings["base_url"]}
