# A Windows image recognised by its SHELL alone (cmd), that names the administrator account explicitly.
# expect: stage 0 line=6
FROM registry.example.com/windows-base:2.1
SHELL ["cmd", "/S", "/C"]
RUN mkdir C:\app
USER ContainerAdministrator
