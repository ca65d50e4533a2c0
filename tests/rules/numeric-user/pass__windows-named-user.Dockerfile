# Windows accounts are names (ContainerUser); no numeric uid applies, so numeric-user does not ask for one.
FROM mcr.microsoft.com/windows/servercore:ltsc2022
USER ContainerUser
