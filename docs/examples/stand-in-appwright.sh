#!/bin/sh
# Stands in for `npx appwright test` in the README's walkthrough, so you can try qualgent without
# Node, Appium or a device. Called as:  stand-in-appwright.sh install <app version>
#                                       stand-in-appwright.sh test <app version> <test file>
# A test whose file name contains "fail" fails (exit 1); every other test passes (exit 0).
case "$1" in
  install) echo "installing build $2"; sleep 1 ;;
  test)    echo "running $3 against build $2"; sleep 2
           case "$3" in *fail*) echo "1 failed"; exit 1 ;; esac
           echo "1 passed" ;;
  *)       echo "usage: $0 install VERSION | test VERSION FILE" >&2; exit 2 ;;
esac
