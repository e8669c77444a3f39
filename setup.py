from setuptools import find_packages, setup

setup(
    name="gitlab-registry-usage-rest",
    version="0.4.0",
    description="A RESTful web service for querying the repository sizes of a GitLab registry.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["gitlab_registry_usage_rest", "gitlab_registry_usage_rest.*"]),
    # Ranges, not pins: the original broke when Flask 2.1 came out because nothing bounded it.
    # constraints.txt holds the exact versions CI and the Dockerfile install.
    install_requires=[
        "Brotli>=1.1,<2",
        "cheroot>=10,<12",
        "Flask>=3.0,<4",
        "Flask-Cors>=5,<7",
        "Flask-HTTPAuth>=4.8,<5",
        "Flask-JWT-Extended>=4.6,<5",
        "Flask-RESTful>=0.3.10,<0.4",
        "flask-restful-hal==0.2.6",
        "gitlab-registry-usage>=0.3.3,<0.4",
        "cryptography>=42",  # RS256 / ES256 tokens
        "json2html>=1.3,<2",
        "limits>=3.13,<6",
        "ldap3>=2.9,<3",
        "prometheus_client>=0.20,<1",
        "requests>=2.31,<3",
        "Werkzeug>=3.0,<4",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "PyJWT>=2.8,<3", "mypy>=1.10", "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["gitlab-registry-usage-rest = gitlab_registry_usage_rest.cli:main"]},
    classifiers=[
        "Environment :: Web Environment",
        "Framework :: Flask",
        "Intended Audience :: System Administrators",
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: System :: Systems Administration :: Authentication/Directory :: LDAP",
    ],
)
