"""One generator per demo image; ``iiifserver.demo.build`` lists them and writes the files."""
