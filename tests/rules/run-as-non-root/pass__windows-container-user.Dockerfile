# escape=`
# A Windows image that runs as ContainerUser passes; no numeric uid is asked for.
FROM mcr.microsoft.com/windows/nanoserver:ltsc2022
SHELL ["pwsh", "-Command"]
COPY app C:/app
USER ContainerUser
CMD ["C:\\app\\app.exe"]
