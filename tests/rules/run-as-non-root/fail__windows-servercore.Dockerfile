# escape=`
# The shape of docker-library/python's windowsservercore variant (written for this test): a Windows image with no
# USER runs as ContainerAdministrator. The finding says `USER ContainerUser`, never useradd or a uid.
# expect: stage 0 line=6

FROM mcr.microsoft.com/windows/servercore:ltsc2022

SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]

ENV PYTHON_VERSION 3.12.7
RUN $url = ('https://www.python.org/ftp/python/{0}/python-{1}-amd64.exe' -f $env:PYTHON_VERSION, $env:PYTHON_VERSION); `
	Write-Host ('Downloading {0} ...' -f $url); `
	Invoke-WebRequest -Uri $url -OutFile 'python.exe'

CMD ["python"]
